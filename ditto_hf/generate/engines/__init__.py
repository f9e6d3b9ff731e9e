"""Generation engines: run stages in one process (local) or on a Ray cluster (ray)."""
