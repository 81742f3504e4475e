"""DNS knowledge, rule index, attribution."""
