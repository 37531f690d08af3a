"""What a stage function sees and returns. No Kafka imports here: stages test without a broker."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Message:
    """One decoded, schema-valid input record."""

    schema: str
    data: Mapping[str, Any]
    topic: str = ""
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    timestamp_ms: int = 0
    headers: Headers = ()


@dataclass(frozen=True)
class Output:
    """One record a stage wants produced; validated against ``schema`` before it is sent."""

    topic: str
    schema: str
    data: Mapping[str, Any]
    key: bytes | str | None = None
    headers: Headers = field(default_factory=tuple)


# A stage turns a batch of messages into outputs. It raises TransientError when a dependency is
# down (the batch is retried) and any other exception for a message it cannot handle (the
# runner then isolates the failing message and dead-letters it).
Stage = Callable[[Sequence[Message]], Iterable[Output]]


# Why the runner calls ResendingStage.outputs_lost (metric label values).
OUTPUTS_LOST_REASONS = ("stage_error", "transient_error", "rewind", "partitions_lost")


@runtime_checkable
class ResendingStage(Protocol):
    """A stage that remembers what it sent and holds back what it thinks is already sent (detect's
    track shots). The runner calls ``outputs_delivered`` once a batch's outputs are acknowledged,
    and ``outputs_lost`` whenever outputs may not have reached the broker, or may have been lost
    with it: a stage call failed and its outputs were discarded (``stage_error``,
    ``transient_error``), a batch was rewound after a failed produce (``rewind``): the outputs
    since the last delivery; or the group forgot this consumer (``partitions_lost``, what a broker
    restart looks like): anything delivered may be gone too. The stage must then send again what
    it would otherwise hold back, so a fault never silently uses up the one chance a record had."""

    def __call__(self, batch: Sequence[Message]) -> Iterable[Output]: ...

    def outputs_delivered(self) -> None: ...

    def outputs_lost(self, reason: str) -> None: ...
