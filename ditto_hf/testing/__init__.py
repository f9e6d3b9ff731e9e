"""Tiny random checkpoints for tests and the offline demo (built from configs, nothing downloaded)."""
