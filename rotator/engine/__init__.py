"""The rotation engine: the persisted, locked, resumable rotation protocol."""
