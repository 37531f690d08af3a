"""Tamper-evident audit trail: a signed hash chain per audit partition, its writer, verify and show."""
