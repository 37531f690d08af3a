"""The van and its link to the core: deployment bundles, van keys, the outbox and forwarder."""
