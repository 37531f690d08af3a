"""Keeps a WatchlistIndex equal to the compacted lfr.watchlist.v1 topic, at start and live.

Every matcher replica reads the whole topic itself (assigned partitions, no consumer group,
no commits): the topic is the source of truth and the index is derived. At start it reads to
the high watermarks, rebuilds the index from that state, then applies each change as it
arrives (searchable well within a second) and sweeps expired entries out periodically.

Failing safe (issue #14): a record that cannot be read or applied is skipped and reported
(RejectReporter) and later records, removals included, still apply; an update changes the
index before the in-memory state, so a failed update leaves the old entry. If the loader stops
for any other reason it clears ``ready`` and ``lfr_watchlist_ready`` and ``healthy`` turns
false: the matcher then refuses to match (a stale watchlist must never alert) and exits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException
from prometheus_client import Counter, Gauge

from services.common.errors import LfrError, MessageError, TransientError
from services.common.kafka_config import client_config
from services.common.settings import KafkaSettings
from services.common.signing import Keyring, SignatureRefused
from services.common.topic_reader import TopicMissing, assign_from_beginning, caught_up

from .entry import WatchlistEntry
from .index import WatchlistIndex
from .rejects import RejectReporter
from .verified import VerifiedWatchlist

logger = logging.getLogger(__name__)

WATCHLIST_UPDATES = Counter("lfr_watchlist_updates_total", "Watchlist changes applied to the index", ["action"])
WATCHLIST_SUBJECTS = Gauge("lfr_watchlist_subjects", "Live subjects in the watchlist index")
WATCHLIST_READY = Gauge("lfr_watchlist_ready", "1 once the index has been rebuilt from the topic")


def now_ms() -> int:
    return int(time.time() * 1000)


class WatchlistMaterialiser:
    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        index: WatchlistIndex,
        *,
        sweep_interval_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
        reporter: RejectReporter | None = None,
        keyring: Keyring,
        on_refused: Callable[[object, SignatureRefused, bool], None] | None = None,
        audit_index=None,
    ) -> None:
        self.reporter = reporter
        self.topic = topic
        self.keyring = keyring
        # The one verified reader of the watchlist topic (services/governance/watchlist/verified.py).
        self._verified = VerifiedWatchlist(keyring, topic, self._refused(on_refused), audit_index=audit_index)
        self.index = index
        self.sweep_interval_s = sweep_interval_s
        self.clock = clock
        self.entries: dict[str, WatchlistEntry] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="watchlist-materialiser", daemon=True)
        self._consumer = Consumer(
            {
                **client_config(settings),
                "group.id": "lfr-watchlist-reader",  # required by librdkafka; never joins or commits
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def healthy(self) -> bool:
        """The loader is running (or has not started yet) and has not failed."""
        return self._failed is None and (self._thread.is_alive() or not self._thread.ident)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.1):
            if self._failed is not None:
                raise RuntimeError("watchlist materialiser failed") from self._failed
            if time.monotonic() > deadline:
                raise TimeoutError(f"watchlist not loaded from {self.topic} within {timeout_s} s")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        try:
            targets = self._assign_all()
            while not self._stop.is_set() and not self._caught_up(targets):
                for record in self._consumer.consume(500, 0.2):
                    if record.error() is None:
                        self._apply_to_state(record)
            self.index.rebuild(self.entries, self.clock())
            self._ready()
            next_sweep = time.monotonic() + self.sweep_interval_s
            while not self._stop.is_set():
                for record in self._consumer.consume(500, 0.1):
                    if record.error() is None:
                        self._apply_live(record)
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + self.sweep_interval_s
        except BaseException as exc:  # noqa: BLE001 - reported through wait_ready / the log
            self._failed = exc
            self.ready.clear()
            WATCHLIST_READY.set(0)
            logger.exception("watchlist materialiser stopped; the watchlist is no longer current")
        finally:
            self._consumer.close()

    def _assign_all(self) -> dict[int, int]:
        try:
            return assign_from_beginning(self._consumer, self.topic)
        except TopicMissing as exc:
            raise LfrError(f"watchlist {exc}") from None

    def _caught_up(self, targets: dict[int, int]) -> bool:
        return caught_up(self._consumer, self.topic, targets)

    def _parse(self, record) -> tuple[str, WatchlistEntry | None] | None:
        try:
            changed = self._verified.change(record, self.ready.is_set())
            if changed is not None and changed[1] is not None:
                self.index.check(changed[1])
        except Exception as exc:  # noqa: BLE001 - any unreadable record is skipped, never fatal
            self._reject(record, exc)
            return None
        return changed

    def _reject(self, record, exc: BaseException) -> None:
        WATCHLIST_UPDATES.labels("invalid").inc()
        logger.error(
            "invalid watchlist record skipped",
            extra={"partition": record.partition(), "offset": record.offset(), "error_class": type(exc).__name__},
        )
        if self.reporter is not None:
            self.reporter.report(record.topic(), record.partition(), record.offset(), record.key(), exc)
    def _refused(self, report):
        """Refused records change nothing; counted here, reported by ``report`` (services/governance/audit/refusals.py)."""

        def refused(record, refusal: SignatureRefused, live: bool) -> None:
            WATCHLIST_UPDATES.labels("refused").inc()
            logger.error("watchlist record refused", extra={"offset": record.offset(), "reason": refusal.reason, "key_id": refusal.key_id})
            if report is not None:
                report(record, refusal, live)

        return refused

    def _apply_to_state(self, record) -> tuple[str, WatchlistEntry | None] | None:
        parsed = self._parse(record)
        if parsed is not None:
            subject_id, entry = parsed
            if entry is None:
                self.entries.pop(subject_id, None)
            else:
                self.entries[subject_id] = entry
        return parsed

    def _apply_live(self, record) -> None:
        parsed = self._parse(record)
        if parsed is None:
            return
        subject_id, entry = parsed
        if entry is not None:
            try:
                self._retrying(lambda: self._index_change(subject_id, entry))
            except MessageError as exc:  # the index refused this entry: the old one stays
                self._reject(record, exc)
                return
        else:
            # A removal that cannot be applied is not skippable: it stops the loader (fail safe).
            self._retrying(lambda: self._index_change(subject_id, entry))
        if entry is None:
            self.entries.pop(subject_id, None)
        else:
            self.entries[subject_id] = entry
        self._ready()

    def _index_change(self, subject_id: str, entry: WatchlistEntry | None) -> None:
        if entry is None or entry.is_expired(self.clock()):
            self.index.remove(subject_id)
            WATCHLIST_UPDATES.labels("remove").inc()
        else:
            self.index.upsert(entry)
            WATCHLIST_UPDATES.labels("upsert").inc()

    def _sweep(self) -> None:
        now = self.clock()
        expired = [sid for sid, e in self.entries.items() if e.is_expired(now)]
        for sid in expired:
            del self.entries[sid]
        removed = self._retrying(lambda: self.index.remove_expired(now))
        if removed:
            WATCHLIST_UPDATES.labels("expire").inc(len(expired))
            logger.info("expired watchlist entries removed from the index", extra={"subjects": len(expired)})
        WATCHLIST_SUBJECTS.set(len(self.entries))

    def _ready(self) -> None:
        WATCHLIST_SUBJECTS.set(sum(1 for e in self.entries.values() if not e.is_expired(self.clock())))
        if not self.ready.is_set():
            WATCHLIST_READY.set(1)
            self.ready.set()
            logger.info("watchlist index ready", extra={"subjects": len(self.entries)})

    def _retrying(self, action: Callable[[], object]) -> object:
        delay = 0.2
        while True:
            try:
                return action()
            except (TransientError, KafkaException) as exc:
                logger.warning("index update failed; retrying", extra={"error_class": type(exc).__name__})
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, 10.0)
