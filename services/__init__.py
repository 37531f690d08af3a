"""OpenLFR: live facial recognition services that talk only through Kafka topics."""

__version__ = "0.1.0"
