"""The pipeline simulator: `portal demo run` (live) and `portal demo seed` (history)."""
