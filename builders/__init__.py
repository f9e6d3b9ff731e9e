"""Readers for the Ditto-1M release layouts, used by the ``ditto_1m`` builder."""
