"""The Ditto generation chain: stages, model registry, engines and recipes."""
