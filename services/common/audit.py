"""The one way an audit record is made: every admin path (watchlist, review console) calls
``audit_record``. (The security issue turns this into a signed hash chain in one place.)"""

from __future__ import annotations

import time
from typing import Any

from .envelope import encode

AUDIT_SCHEMA = "lfr.audit.v1"


def audit_record(service: str, actor: str, action: str, subject_id: str | None = None,
                 details: dict[str, Any] | None = None, at_ms: int | None = None) -> tuple[bytes, bytes]:
    """(key, value) of one lfr.audit.v1 record: who did what, when; never images or embeddings."""
    record: dict[str, Any] = {"actor": actor, "action": action, "at_ms": int(time.time() * 1000) if at_ms is None else at_ms, "service": service}
    if subject_id:
        record["subject_id"] = subject_id
    if details:
        record["details"] = details
    return (subject_id or actor).encode(), encode(AUDIT_SCHEMA, record)
