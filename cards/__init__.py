"""Dataset-card templates."""
