"""The van-to-core link: the durable outbox and the outcome forwarder the van runs (issue #26)."""
