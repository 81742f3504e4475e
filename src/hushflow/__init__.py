"""hushflow: a companion to Cilium and Hubble.

Write the policy you meant (FQDN denies included), see which rule produced every verdict, and
alert only on the drops nobody planned.
"""

__version__ = "0.1.0"
