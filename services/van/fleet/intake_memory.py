"""The intake's de-duplication memory rebuilt at start from what it already wrote at the core.

The intake drops a forwarded record whose ``lfr_link_id`` it wrote before (the link delivers at
least once). Kept only in memory, that would forget every id at a restart, and a record the
link sent again afterwards would reach the core twice. The core's output topics are the intake's
changelog: every record it writes on carries its ``lfr_link_id`` header, and it commits its
landing-topic offsets only after the core's broker acknowledged those writes. So at start the
intake reads the recent tail of each topic it writes to and remembers the ids there; a record
written just before a crash (its offset not yet committed, read again) is then a duplicate, as
it should be. No second topic, no window between writing a record and recording its id.

Bounded, policy ``forget_oldest``: the rebuild reads at most LFR_INTAKE_REBUILD_RECORDS of each
partition, only records written within LFR_INTAKE_DEDUP_WINDOW_S, and the memory keeps the
last LFR_INTAKE_SEEN_IDS ids; a copy re-sent after all of that passes again. The link re-sends
only rows the core acknowledged but the van had not yet marked sent (seconds to minutes), so
the window covers it by orders of magnitude. Metrics: ``lfr_intake_seen_ids_rebuilt_total``,
``lfr_intake_seen_ids_evicted_total``, ``lfr_intake_seen_ids``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge

from services.common.topic_reader import TopicMissing, read_to_end
from services.common.topics import load_topic_specs
from services.governance.forces.naming import force_topic
from services.van.link.dedup import SeenIds, link_id_of
from services.van.link.egress import OUTCOMES, logical_name

from .intake import HELD

logger = logging.getLogger(__name__)

REBUILT = Counter("lfr_intake_seen_ids_rebuilt_total", "Forwarded ids read back from the core's output topics at intake start")
EVICTED = Counter("lfr_intake_seen_ids_evicted_total", "Forwarded ids forgotten to keep the de-dup memory bounded (policy forget_oldest)")
SIZE = Gauge("lfr_intake_seen_ids", "Forwarded ids the intake remembers to drop a record sent twice")


def output_topics(vans: Mapping[str, str], names: Iterable[str] | None = None) -> list[str]:
    """Every topic the intake can write an accepted record to: each outcome topic of topics.toml
    (held ones excepted) for each force of the fleet register."""
    names = [spec.name for spec in load_topic_specs()] if names is None else list(names)
    chosen = [n for n in names if logical_name(n) in OUTCOMES and logical_name(n) not in HELD]
    return sorted({force_topic(force, name) for force in set(vans.values()) for name in chosen})


def memory(capacity: int) -> SeenIds:
    """An empty de-dup memory of ``capacity`` ids that counts what it forgets."""
    return SeenIds(capacity, on_evict=EVICTED.inc)


def rebuild(seen: SeenIds, config: Mapping[str, Any], topics: Iterable[str], *, per_partition: int,
            window_s: float, now_ms: int | None = None, timeout_s: float = 60.0) -> int:
    """Remember the ``lfr_link_id`` of each recent record of ``topics``; the number read back."""
    topics = list(topics)
    since_ms = (int(time.time() * 1000) if now_ms is None else now_ms) - int(window_s * 1000)
    found = 0
    for topic in topics:
        try:
            for record in read_to_end(config, topic, group_id="lfr-intake-rebuild", timeout_s=timeout_s, last=per_partition):
                _kind, at_ms = record.timestamp()
                record_id = link_id_of(record.headers())
                if record_id and at_ms >= since_ms:
                    seen.first_time(record_id)
                    found += 1
        except TopicMissing:
            continue  # a force's topic not created yet: nothing was written to it
    REBUILT.inc(found)
    SIZE.set(len(seen))
    logger.info("de-dup memory rebuilt", extra={"ids": found, "topics": len(topics)})
    return found
