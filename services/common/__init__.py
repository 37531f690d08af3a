"""Shared plumbing for OpenLFR services: settings, schemas, envelopes, Kafka runner, metrics, logs."""
