"""The policy model: loading, Cilium implicit rules, schema validation, lint."""
