"""The Ditto-1M builder."""
