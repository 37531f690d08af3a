"""Forces: the tenant of the platform (registry, per-force topic names and principals; issue #24)."""
