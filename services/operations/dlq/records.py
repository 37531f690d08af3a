"""Dead letters as typed records, and the filters ``lfr dlq list|show|replay`` apply.

A dead letter keeps the original key, value and headers and adds the ``lfr_dlq_*`` headers
(schemas/lfr.dlq.v1.json). ``lfr_dlq_payload`` says whether the value is the ``original``
bytes, ``withheld`` (biometric: coordinates and reason only) or ``truncated`` (too large to
dead-letter whole); a record without it predates the header and is ``original``. Only an
``original`` payload can be replayed.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

DLQ_PREFIX = "lfr_dlq_"
PAYLOAD_HEADER = "lfr_dlq_payload"
REPLAYABLE = "original"


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic; ``id`` is ``partition:offset`` in that topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def header(self, name: str, default: str = "") -> str:
        for key, value in reversed(self.headers):  # the last one wins (a re-dead-lettered replay)
            if key == name:
                return (value or b"").decode("utf-8", "replace")
        return default

    @property
    def source_topic(self) -> str:
        return self.header("lfr_dlq_topic")

    @property
    def source_partition(self) -> int:
        return int(self.header("lfr_dlq_partition", "-1") or -1)

    @property
    def source_offset(self) -> int:
        return int(self.header("lfr_dlq_offset", "-1") or -1)

    @property
    def service(self) -> str:
        return self.header("lfr_dlq_service")

    @property
    def reason(self) -> str:
        return self.header("lfr_dlq_reason")

    @property
    def error_class(self) -> str:
        return self.header("lfr_dlq_error_class")

    @property
    def error(self) -> str:
        return self.header("lfr_dlq_error")

    @property
    def at_ms(self) -> int:
        text = self.header("lfr_dlq_at_ms", "0")
        return int(text) if text.isdigit() else 0

    @property
    def payload(self) -> str:
        return self.header(PAYLOAD_HEADER, REPLAYABLE) or REPLAYABLE

    @property
    def replayable(self) -> bool:
        return self.payload == REPLAYABLE and bool(self.source_topic)

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the record had before it was dead-lettered."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_PREFIX)]

    def summary(self) -> dict[str, object]:
        """Metadata only: never the value (it may hold a face)."""
        return {
            "id": self.id,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "service": self.service,
            "reason": self.reason,
            "error_class": self.error_class,
            "error": self.error,
            "at": format_ms(self.at_ms),
            "payload": self.payload,
            "value_bytes": len(self.value or b""),
        }


@dataclass(frozen=True)
class Filter:
    source_topic: str | None = None
    reason: str | None = None
    service: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    ids: frozenset[str] | None = None

    def __call__(self, letter: DeadLetter) -> bool:
        return (
            (self.source_topic is None or letter.source_topic == self.source_topic)
            and (self.reason is None or letter.reason == self.reason)
            and (self.service is None or letter.service == self.service)
            and (self.since_ms is None or letter.at_ms >= self.since_ms)
            and (self.until_ms is None or letter.at_ms < self.until_ms)
            and (self.ids is None or letter.id in self.ids)
        )


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now_ms: int | None = None) -> int:
    """``30m``, ``2h``, ``7d`` (that long ago) or an ISO 8601 time (UTC unless it says) -> ms."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    match = _RELATIVE.match(text.strip())
    if match:
        return now_ms - int(float(match.group(1)) * _UNITS[match.group(2)] * 1000)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration like 30m, 2h, 7d nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def format_ms(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
