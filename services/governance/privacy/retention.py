"""The retention verdict behind `lfr topics verify`: can biometric data outlive the promise?

For each biometric topic declared in topics.toml with a ``promise_ms`` (how long we say its
data may exist), the broker's *effective* settings are read and each is checked:

- ``cleanup.policy`` must include ``delete`` (compaction alone keeps the latest record forever);
- ``retention.ms`` + ``segment.ms`` must fit in the promise: a segment is deleted as a whole
  once its newest record is older than retention, so its oldest lives retention + segment.ms;
- ``message.timestamp.type`` must be ``LogAppendTime``: with CreateTime a producer's clock sets
  the timestamp retention counts from, and a clock in the future delays deletion;
- the broker's ``log.retention.check.interval.ms``, where the broker exposes it, must fit in
  the promise on top of that (Kafka's default check interval is 5 minutes).

The embedded broker (Tansu, memory storage) enforces neither retention nor DeleteRecords:
records stay in its memory until it stops. The verdict says so plainly and fails, because the
promise cannot be kept there, whatever the topic settings say.

Compacted biometric topics (the watchlist) promise that a removed subject's record is gone
within ``promise_ms`` of its tombstone: ``segment.ms`` + ``max.compaction.lag.ms`` must fit,
with ``min.cleanable.dirty.ratio`` set.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field

from confluent_kafka.admin import AdminClient, ConfigResource
from prometheus_client import Gauge

from services.common.topics import TopicSpec, load_topic_specs

logger = logging.getLogger(__name__)

RETENTION_VERDICT = Gauge(
    "lfr_retention_verdict",
    "1 when the broker's effective settings keep the topic's privacy promise, 0 when they do not",
    ["topic"],
)
EMBEDDED_BROKER_NOTE = (
    "embedded broker (Tansu, memory storage): it enforces neither retention.ms nor DeleteRecords, "
    "so every record stays in its memory until the broker stops"
)
CHECK_INTERVAL = "log.retention.check.interval.ms"


@dataclass
class TopicVerdict:
    topic: str
    ok: bool
    promise_ms: int | None
    problems: list[str] = field(default_factory=list)
    settings_ok: bool = True  # the topic's own settings keep the promise (the broker may still not)
    effective: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict:
        return asdict(self)


@dataclass
class Verdict:
    broker: str  # "kafka" or "embedded-tansu"
    topics: list[TopicVerdict]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.topics)

    def as_json(self) -> dict:
        return {"ok": self.ok, "broker": self.broker, "notes": self.notes, "topics": [t.as_json() for t in self.topics]}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def check_topic(spec: TopicSpec, effective: dict[str, str] | None, check_interval_ms: int | None) -> TopicVerdict:
    """Pure check of one topic's effective configs against its promise."""
    promise = spec.promise_ms
    verdict = TopicVerdict(spec.name, True, promise, effective=dict(effective or {}))
    problems = verdict.problems
    if effective is None:
        problems.append("topic missing on the broker")
    elif promise is not None:
        policy = set(effective.get("cleanup.policy", "delete").split(","))
        if effective.get("message.timestamp.type", "CreateTime") != "LogAppendTime":
            problems.append(
                f"message.timestamp.type={effective.get('message.timestamp.type', 'CreateTime (default)')}: "
                "a producer's clock decides when retention starts; set LogAppendTime"
            )
        segment = _int(effective.get("segment.ms"))
        if spec.config.get("cleanup.policy") == "compact":  # the spec says which promise applies
            # A removed subject's record goes once its segment is closed (segment.ms) and the
            # cleaner must compact it (max.compaction.lag.ms); the tombstone carries no biometrics.
            lag = _int(effective.get("max.compaction.lag.ms"))
            if lag is None or segment is None or lag + segment > promise:
                problems.append(f"segment.ms={segment} + max.compaction.lag.ms={lag} exceed the promise of {promise} ms")
            if "compact" not in policy:
                problems.append(f"cleanup.policy={effective.get('cleanup.policy')}: removals are never compacted away")
            if effective.get("min.cleanable.dirty.ratio") is None:
                problems.append("min.cleanable.dirty.ratio not set")
        else:
            retention = _int(effective.get("retention.ms"))
            if "delete" not in policy:
                problems.append(f"cleanup.policy={effective.get('cleanup.policy')}: nothing is ever deleted")
            if retention is None or retention < 0:
                problems.append(f"retention.ms={effective.get('retention.ms', 'unset (broker default: 7 days)')}: data kept past the promise")
            elif segment is None or retention + segment > promise:
                # Time retention deletes whole segments once their newest record is older than
                # retention.ms, so the oldest record of a segment lives retention + segment.ms.
                problems.append(f"retention.ms={retention} + segment.ms={segment} exceed the promise of {promise} ms")
            elif check_interval_ms is not None and retention + segment + check_interval_ms > promise:
                problems.append(
                    f"retention.ms={retention} + segment.ms={segment} + {CHECK_INTERVAL}={check_interval_ms} "
                    f"exceed the promise of {promise} ms"
                )
    verdict.ok = verdict.settings_ok = not problems
    return verdict


def is_embedded_broker(admin: AdminClient, timeout_s: float) -> bool:
    return str(admin.list_topics(timeout=timeout_s).cluster_id or "").startswith("tansu")


def broker_check_interval(admin: AdminClient, timeout_s: float) -> int | None:
    """The broker's retention check interval, or None where the broker does not expose it."""
    brokers = admin.list_topics(timeout=timeout_s).brokers
    intervals = []
    for broker_id in brokers:
        futures = admin.describe_configs([ConfigResource("broker", str(broker_id))], request_timeout=timeout_s)
        for future in futures.values():
            entry = future.result().get(CHECK_INTERVAL)
            if entry is not None and _int(entry.value) is not None:
                intervals.append(int(entry.value))
    return max(intervals) if intervals else None


def verify(admin: AdminClient, specs: list[TopicSpec] | None = None, timeout_s: float = 15.0) -> Verdict:
    """Read effective topic and broker configs and check every biometric topic with a promise."""
    specs = [s for s in (specs or load_topic_specs()) if s.biometric and s.promise_ms is not None]
    existing = admin.list_topics(timeout=timeout_s).topics
    present = [s.name for s in specs if s.name in existing]
    futures = admin.describe_configs([ConfigResource("topic", n) for n in present], request_timeout=timeout_s) if present else {}
    effective = {res.name: {k: v.value for k, v in f.result().items() if v.value is not None} for res, f in futures.items()}
    embedded = is_embedded_broker(admin, timeout_s)
    interval = None if embedded else broker_check_interval(admin, timeout_s)
    notes = []
    if embedded:
        notes.append(EMBEDDED_BROKER_NOTE)
    elif interval is None:
        notes.append(f"the broker does not expose {CHECK_INTERVAL}; the check assumes it is short")
    topics = [check_topic(s, effective.get(s.name), interval) for s in specs]
    if embedded:
        for topic in topics:
            topic.problems.append(EMBEDDED_BROKER_NOTE)
            topic.ok = False
    return Verdict("embedded-tansu" if embedded else "kafka", topics, notes)


def export(verdict: Verdict) -> None:
    for topic in verdict.topics:
        RETENTION_VERDICT.labels(topic.topic).set(1 if topic.ok else 0)


def verify_at_start(service: str, client_config: dict[str, str]) -> threading.Thread:
    """Every service's start: verify in the background (never delaying work), log and export."""

    def run() -> None:
        try:
            verdict = verify(AdminClient(client_config))
        except Exception as exc:  # noqa: BLE001 - a broker not reachable yet: the runner will say so
            logger.warning("retention verdict unavailable", extra={"service": service, "error_class": type(exc).__name__})
            return
        export(verdict)
        failing = {t.topic: t.problems for t in verdict.topics if not t.ok}
        if failing:
            logger.error("biometric data can outlive the retention promise", extra={"service": service, "topics": failing})
        else:
            logger.info("retention promise verified", extra={"service": service, "topics": len(verdict.topics)})

    thread = threading.Thread(target=run, name="retention-verdict", daemon=True)
    thread.start()
    return thread
