"""FQDN-deny compiler, resolver, CIDR group state, DNS block artifacts."""
