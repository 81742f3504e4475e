"""Output: Hubble output formats, metrics, events."""
