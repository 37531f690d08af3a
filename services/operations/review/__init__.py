"""The officer review console: live alerts, adjudication, evidence custody (see README.md)."""
