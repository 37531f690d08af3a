"""Error taxonomy shared by the runner and stage functions.

The runner decides what to do with a failure by its class: transient errors are retried with
backoff (the data is fine, a dependency is not), everything else raised by a stage is treated
as a property of the message and sends it to the dead-letter topic.
"""

from __future__ import annotations


class LfrError(Exception):
    """Base class of OpenLFR errors."""


class TransientError(LfrError):
    """A dependency (broker, Qdrant, network) is unavailable; retry the same work later."""


class MessageError(LfrError):
    """A message cannot be used; it is dead-lettered with ``reason``."""

    reason = "stage_error"


class DecodeError(MessageError):
    """The record value is not a readable OpenLFR envelope."""

    reason = "decode_error"


class UnknownSchemaError(MessageError):
    """The envelope names a message type or version this service does not know."""

    reason = "unknown_schema"


class SchemaValidationError(MessageError):
    """The message body does not satisfy its JSON Schema."""

    reason = "schema_invalid"


class OutputValidationError(MessageError):
    """A stage produced an output that does not satisfy its schema (a bug, never sent on)."""

    reason = "output_invalid"


class SettingsError(LfrError):
    """A setting is missing or out of bounds; raised at start, names the variable."""


class FatalError(LfrError):
    """The service cannot do its work at all (a dependency refuses it, or is misconfigured):
    the runner stops and exits non-zero instead of dead-lettering every record, so the
    supervisor restarts it and an alert fires. ``reason`` labels the alerting metric."""

    reason = "fatal"
