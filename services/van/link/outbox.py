"""The van's durable outbox: outcomes waiting for the link, in one SQLite file (WAL, synchronous=FULL).

A row is committed to disk before the van-side offset that produced it is committed, and
deleted only after the core acknowledged it, so a kill -9 or a power cut at any moment loses
nothing: at worst a row is sent twice, and the core de-duplicates by its ``ce_id`` (an id that
is the same however often the row is taken in or sent). Rows leave in the order they came in
(``seq``), which keeps the order per key. A sent row keeps only its id for a while (its key
and value are cleared at once), so a record taken in again after a crash is not sent again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ce_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB,
    headers TEXT NOT NULL,
    enqueued_at_ms INTEGER NOT NULL,
    sent_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS unsent ON outbox (sent_at_ms, seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class OutboxRow:
    ce_id: str
    topic: str  # the outcome's topic name (the van's and the core's)
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    seq: int = 0
    enqueued_at_ms: int = 0

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value or b"") + sum(len(n) + len(v) for n, v in self.headers)


@dataclass(frozen=True)
class Backlog:
    rows: int
    bytes: int
    oldest_enqueued_at_ms: int | None


class Outbox:
    """One SQLite file; safe to share between threads of one process (one connection, a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not only a crash
        self._db.executescript(_SCHEMA)

    def enqueue(self, rows: Iterable[OutboxRow], now_ms: int | None = None) -> int:
        """Add rows in one transaction; a row whose ce_id is already queued is ignored. Returns
        how many were new."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO outbox (ce_id, topic, key, value, headers, enqueued_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                    [(r.ce_id, r.topic, r.key, r.value, _headers_json(r.headers), now) for r in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._db.total_changes - before

    def peek(self, limit: int, after_seq: int = 0) -> list[OutboxRow]:
        """The oldest unsent rows after ``after_seq``, oldest first."""
        with self._lock:
            found = self._db.execute(
                "SELECT seq, ce_id, topic, key, value, headers, enqueued_at_ms FROM outbox WHERE sent_at_ms IS NULL AND seq > ? "
                "ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
        return [OutboxRow(ce_id, topic, key, value, _headers_from_json(headers), seq, at) for seq, ce_id, topic, key, value, headers, at in found]

    def ack(self, seqs: Iterable[int], now_ms: int | None = None) -> None:
        """Mark rows the core acknowledged as sent; their key, value and headers go at once."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("UPDATE outbox SET sent_at_ms = ?, key = NULL, value = NULL, headers = '[]' WHERE seq = ?",
                                 [(now, s) for s in seqs])
            # when the core last acknowledged: the heartbeat's link state (another process reads it)
            self._db.execute("INSERT INTO meta (name, value) VALUES ('last_ack_ms', ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value", (now,))
            self._db.execute("COMMIT")

    def forget_sent(self, before_ms: int) -> int:
        """Drop the ids of rows sent before ``before_ms`` (the re-intake guard's memory)."""
        with self._lock:
            return self._db.execute("DELETE FROM outbox WHERE sent_at_ms IS NOT NULL AND sent_at_ms < ?", (before_ms,)).rowcount

    def backlog(self) -> Backlog:
        """What waits for the link: rows, bytes, and when the oldest came in."""
        with self._lock:
            rows, size, oldest = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(COALESCE(LENGTH(key), 0) + COALESCE(LENGTH(value), 0)), 0), MIN(enqueued_at_ms) "
                "FROM outbox WHERE sent_at_ms IS NULL").fetchone()
        return Backlog(rows, size, oldest)

    def last_ack_ms(self) -> int | None:
        with self._lock:
            found = self._db.execute("SELECT value FROM meta WHERE name = 'last_ack_ms'").fetchone()
        return found[0] if found else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _headers_json(headers: Iterable[tuple[str, bytes]]) -> str:
    return json.dumps([[name, (value or b"").hex()] for name, value in headers])


def _headers_from_json(text: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, bytes.fromhex(value)) for name, value in json.loads(text))
