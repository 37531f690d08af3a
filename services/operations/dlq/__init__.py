"""Dead-letter tooling: read, filter, show and replay records of lfr.dlq.v1 (``lfr dlq``)."""
