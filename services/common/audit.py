"""An unchained audit record body. Do not write it to lfr.audit.v2: every admin path appends
through the chained, signed writer (services/governance/audit/writer.py: AuditWriter, or
WatchlistStore.audit), and `lfr audit verify` reports any record outside the chain."""

from __future__ import annotations

import time
from typing import Any

from .jsonevents import encode

AUDIT_SCHEMA = "lfr.audit.v2"


def audit_record(service: str, actor: str, action: str, subject_id: str | None = None,
                 details: dict[str, Any] | None = None, at_ms: int | None = None) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of one lfr.audit.v2 record (a plain JSON CloudEvent): who did what,
    when; never images or embeddings."""
    record: dict[str, Any] = {"actor": actor, "action": action, "at_ms": int(time.time() * 1000) if at_ms is None else at_ms, "service": service}
    if subject_id:
        record["subject_id"] = subject_id
    if details:
        record["details"] = details
    value, headers = encode(AUDIT_SCHEMA, record)
    return (subject_id or actor).encode(), value, headers
