"""Hubble FlowFilter semantics, CEL, and `hubble observe` flag translation."""
