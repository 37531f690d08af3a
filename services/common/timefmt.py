"""Times on the command line: ISO 8601 in, ISO 8601 UTC out, epoch milliseconds inside."""

from __future__ import annotations

from datetime import datetime, timezone


def parse_time_ms(text: str) -> int:
    """ISO 8601 date or date-time (UTC unless an offset is given) -> epoch ms."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp() * 1000)


def format_time_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
