"""The core's side of the link: each forwarded record's id, and a bounded memory of ids seen.

The link delivers at least once (a record acknowledged by the core but not yet marked sent
when the van lost power is sent again), so a reader at the core keeps the first record of each
``lfr_link_id`` and skips the rest. The id is the record's CloudEvents (source, id) when it has
them, else a hash of what the van's broker held (van, topic, timestamp, key, value).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable

LINK_ID_HEADER = "lfr_link_id"
VAN_HEADER = "lfr_van"
TOPIC_HEADER = "lfr_topic"  # the outcome topic of a record sent to the core intake's landing topic


def link_id(van_id: str, topic: str, timestamp_ms: int, key: bytes | None, value: bytes | None,
            headers: Iterable[tuple[str, bytes | None]] | None) -> str:
    found = {name: raw for name, raw in headers or () if raw is not None}
    if LINK_ID_HEADER in found:  # queued in the van with its id (e.g. an erasure audit record)
        return found[LINK_ID_HEADER].decode("utf-8", "replace")
    digest = hashlib.sha256()
    if "ce_id" in found and "ce_source" in found:
        parts = (b"ce", found["ce_source"], found["ce_id"])
    else:
        parts = (b"rec", van_id.encode(), topic.encode(), str(timestamp_ms).encode(), key or b"", b"\x00" if value is None else b"\x01" + value)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()[:32]


def link_id_of(headers: Iterable[tuple[str, bytes | None]] | None) -> str | None:
    for name, raw in headers or ():
        if name == LINK_ID_HEADER and raw:
            return raw.decode("utf-8", "replace")
    return None


class SeenIds:
    """The last ``capacity`` ids seen (a re-sent record arrives within minutes of the first)."""

    def __init__(self, capacity: int = 1_000_000, on_evict: Callable[[], object] | None = None) -> None:
        self.capacity = capacity
        self.on_evict = on_evict  # an id forgotten to stay within capacity (policy forget_oldest)
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._seen

    def first_time(self, record_id: str) -> bool:
        if record_id in self._seen:
            self._seen.move_to_end(record_id)
            return False
        self._seen[record_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict()
        return True
