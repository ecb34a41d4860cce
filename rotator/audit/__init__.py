"""The audit store: rotation state, per-policy state and the append-only event log."""
