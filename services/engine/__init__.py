"""The face engine and tracking: pure libraries (no Kafka) the stages call."""
