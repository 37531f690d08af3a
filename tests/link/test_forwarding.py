"""The link between two real brokers (a van's and a core's): outcomes only, in order per key,
nothing lost across a kill -9 of the forwarder or a core broker restart, no duplicate after de-dup."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from services.common.broker import EmbeddedBroker
from services.common.envelope import encode
from services.common.jsonevents import decode_record
from services.common.settings import load_settings
from services.common.topics import apply_topics, load_topic_specs
from services.van.link.dedup import SeenIds, link_id_of
from services.van.link.egress import OUTCOMES, _has_attachments, logical_name, record_schema
from services.van.link.outbox import Outbox
from services.van.link.service import build
from services.van.link.settings import LinkSettings
from tests.kafka_helpers import NoValidation, unique, wait_until

ROOT = Path(__file__).resolve().parents[2]
KEYS = [f"k{i}" for i in range(5)]


def topic_named(name: str) -> str:
    """The newest version of a logical topic in topics.toml (so renamed versions follow)."""
    found = [spec.name for spec in load_topic_specs() if logical_name(spec.name) == name]
    return max(found, key=lambda t: int(t.rsplit(".v", 1)[1]))


def start_broker(tmp_path: Path, port: int | None = None) -> EmbeddedBroker:
    broker = EmbeddedBroker(port=port, log_path=tmp_path / f"tansu-{port or 'new'}.log")
    broker.start()
    apply_topics(AdminClient({"bootstrap.servers": broker.bootstrap_servers}), load_topic_specs())
    return broker


@pytest.fixture
def brokers(tmp_path):
    van, core = start_broker(tmp_path), start_broker(tmp_path)
    yield van, core
    van.stop()
    core.stop()


def audit(seq: int, key: str) -> bytes:
    return encode("lfr.audit.v2", {"actor": "van:test", "action": "test.seq", "at_ms": seq, "service": "tests", "details": {"seq": seq, "key": key}})


def produce_outcomes(bootstrap: str, start: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for seq in range(start, start + count):
        key = KEYS[seq % len(KEYS)]
        producer.produce(topic_named("audit"), key=key.encode(), value=audit(seq, key))
    assert producer.flush(30) == 0


def produce_biometric(bootstrap: str) -> None:
    """Everything that must stay in the van: biometric topics, and biometric or binary records
    put on outcome topics by mistake."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for name in ("frames", "faces", "embeddings", "matches", "evidence", "watchlist"):
        producer.produce(topic_named(name), key=b"cam-1", value=b"\xff\xd8 jpeg or float32 bytes " + name.encode())
    producer.produce(topic_named("audit"), key=b"x", value=encode("lfr.embeddings.v1", {"embedding": b"\x01" * 512}, registry=NoValidation()))
    producer.produce(topic_named("audit"), key=b"x", value=encode("lfr.audit.v2", {"actor": "a", "action": "x", "at_ms": 1, "service": "s",
                                                                                    "chip": b"\xff\xd8" * 64}, registry=NoValidation()))
    producer.produce(topic_named("alerts"), key=b"x", value=b"{}", headers=[("ce_dataschema", b"https://openlfr.org/schemas/lfr.faces.v1.json")])
    producer.produce(topic_named("dlq"), key=b"cam-1", value=b"\xff\xd8 a withheld frame",
                     headers=[("lfr_dlq_topic", b"lfr.frames.v1"), ("lfr_dlq_reason", b"decode_error")])
    assert producer.flush(30) == 0


class CoreSink:
    """The core's reader of the forwarded topics: keeps the first record of each link id,
    counts the rest as duplicates. Survives the core broker's restart (memory storage) by
    being rebuilt; the test drains it before each restart, as a durable cluster would."""

    def __init__(self, bootstrap: str) -> None:
        self.seen, self.unique, self.duplicates = SeenIds(), [], 0
        self.connect(bootstrap)

    def connect(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("core"), "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False})
        topics = self.consumer.list_topics(timeout=10).topics
        self.consumer.assign([TopicPartition(t, p, 0) for t in topics if not t.startswith("__") for p in topics[t].partitions])

    def poll(self) -> int:
        for record in self.consumer.consume(500, 0.2):
            if record.error() is not None:
                continue
            if self.seen.first_time(link_id_of(record.headers())):
                self.unique.append(record)
            else:
                self.duplicates += 1
        return len(self.unique)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None


def audit_sequence(records) -> dict[str, list[int]]:
    by_key: dict[str, list[int]] = {}
    for record in records:
        if record.topic() == topic_named("audit"):
            data = decode_record(record.value(), record.headers()).data
            if data["action"] == "test.seq":
                by_key.setdefault(data["details"]["key"], []).append(data["details"]["seq"])
    return by_key


def every_core_record(bootstrap: str) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("scan"), "auto.offset.reset": "earliest"})
    topics = consumer.list_topics(timeout=10).topics
    consumer.assign([TopicPartition(t, p, 0) for t in topics if not t.startswith("__") for p in topics[t].partitions])
    found, idle = [], 0
    while idle < 5:
        batch = [r for r in consumer.consume(500, 0.3) if r.error() is None]
        found.extend(batch)
        idle = 0 if batch else idle + 1
    consumer.close()
    return found


def assert_no_biometric_record(records) -> None:
    for record in records:
        name = logical_name(record.topic())
        assert name in OUTCOMES, f"{record.topic()} has a record at the core"
        assert link_id_of(record.headers()), "every record at the core came through the link"
        if name == "dlq":
            assert record.value() is None  # metadata only
            continue
        assert logical_name(record_schema(record.value(), record.headers()) or "") in OUTCOMES
        assert not _has_attachments(record.value() or b"") and b"\xff\xd8" not in (record.value() or b"")


def link_env(van: EmbeddedBroker, core: EmbeddedBroker, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"LFR_KAFKA_BOOTSTRAP_SERVERS": van.bootstrap_servers, "LFR_LINK_CORE_BOOTSTRAP_SERVERS": core.bootstrap_servers,
            "LFR_LINK_CORE_TOPIC": "",  # straight to the core's topics: these tests read what the link itself delivers
            "LFR_VAN_ID": "van-3", "LFR_LINK_OUTBOX_PATH": str(tmp_path / "outbox.sqlite"), "LFR_METRICS_PORT": "0",
            "LFR_SESSION_TIMEOUT_MS": "6000", "LFR_HEARTBEAT_INTERVAL_MS": "1000", "LFR_LINK_GROUP_ID": unique("link"), **extra}


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_outcomes_only_reach_the_core_in_order_per_key_within_the_bandwidth_cap(brokers, tmp_path, monkeypatch):
    van, core = brokers
    for name, value in link_env(van, core, tmp_path, LFR_LINK_BANDWIDTH_BYTES_PER_S="20000", LFR_LINK_BURST_BYTES="4096").items():
        monkeypatch.setenv(name, value)
    # a bundle erased while the link was down: its audit record waits in the outbox
    from services.common.signing import Keyring
    from services.van.fleet.vankey import VanKey
    from services.van.fleet.vanstore import Erasure, VanBundleStore

    erased = VanBundleStore(tmp_path / "van", VanKey.generate("van-3"), "gmp", Keyring())
    queued = Outbox(tmp_path / "outbox.sqlite")
    queued.enqueue([erased.erasure_record(Erasure("b-1", "dep-van", "gmp", 1, "window_end"))])
    queued.close()
    forwarder = build(load_settings(LinkSettings))
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [forwarder.step() for _ in iter(stop.is_set, True)], daemon=True)
    throttled, sent_bytes = metric("lfr_link_throttled_seconds_total"), metric("lfr_link_bytes_forwarded_total")
    withheld = metric("lfr_link_records_withheld_total", {"topic": topic_named("audit"), "reason": "not_an_outcome"})
    thread.start()
    try:
        produce_biometric(van.bootstrap_servers)
        produce_outcomes(van.bootstrap_servers, 0, 200)  # about 40 kB: beyond the 4 kB burst, so the cap paces it
        sink = CoreSink(core.bootstrap_servers)
        wait_until(lambda: sink.poll() >= 202, 60, "200 outcomes, 1 dead letter and 1 erasure record at the core")
    finally:
        stop.set()
        thread.join(30)
        forwarder.close()
    assert {k: v for k, v in audit_sequence(sink.unique).items()} == {k: list(range(i, 200, 5)) for i, k in enumerate(KEYS)}
    (erasure,) = [decode_record(r.value(), r.headers()).data for r in sink.unique if r.topic() == topic_named("audit") and decode_record(r.value(), r.headers()).data["action"] == "bundle.erased"]
    assert erasure["details"]["bundle_id"] == "b-1" and erasure["actor"] == "van:van-3"
    assert sink.duplicates == 0
    assert_no_biometric_record(every_core_record(core.bootstrap_servers))
    assert metric("lfr_link_throttled_seconds_total") > throttled  # the cap held sends back, and said so
    assert metric("lfr_link_bytes_forwarded_total") - sent_bytes > 4096
    assert metric("lfr_link_records_withheld_total", {"topic": topic_named("audit"), "reason": "not_an_outcome"}) == withheld + 1
    sink.close()


def listening_sockets(pid: int) -> list[str]:
    """TCP sockets in LISTEN state that the process holds (from /proc: no tool needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                found.append(fields[1])
    return found


def start_link(env: dict[str, str], tmp_path: Path) -> subprocess.Popen:
    log = open(tmp_path / "link.log", "ab")  # noqa: SIM115 - the process keeps it
    return subprocess.Popen([sys.executable, "-m", "services.cli", "run", "link"], cwd=ROOT, env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT)


def cut_and_restore(core: EmbeddedBroker, sink: CoreSink, tmp_path: Path, van: EmbeddedBroker, start: int, count: int,
                    link: subprocess.Popen | None, env: dict[str, str] | None = None) -> EmbeddedBroker:
    """Stop the core's broker (the sink has read everything it acknowledged), produce ``count``
    outcomes in the van, wait until they are queued on the van's disk, optionally kill -9 and
    restart the forwarder, then bring the core back on the same port, empty."""
    core.stop()
    produce_outcomes(van.bootstrap_servers, start, count)
    box = Outbox(tmp_path / "outbox.sqlite")
    wait_until(lambda: box.backlog().rows >= count, 60, "the outcomes queued durably in the van")
    box.close()
    if link is not None:
        os.kill(link.pid, signal.SIGKILL)
        link.wait(10)
        link = start_link(env, tmp_path)
    sink.close()
    restarted = start_broker(tmp_path, port=core.port)
    restarted.link = link
    sink.connect(restarted.bootstrap_servers)
    return restarted


def test_nothing_lost_or_duplicated_across_a_kill_9_and_a_core_broker_restart(brokers, tmp_path):
    van, core = brokers
    env = link_env(van, core, tmp_path, LFR_LINK_BATCH_MAX="20", LFR_LINK_REBUILD_AFTER_S="5")
    link = start_link(env, tmp_path)
    sink = CoreSink(core.bootstrap_servers)
    try:
        # 1. mid-stream kill -9 of the forwarder while the van keeps producing
        producing = threading.Thread(target=lambda: [produce_outcomes(van.bootstrap_servers, s, 20) for s in range(0, 400, 20)])
        producing.start()
        wait_until(lambda: sink.poll() >= 60, 60, "the first outcomes at the core")
        assert listening_sockets(link.pid) == []  # the van opens connections; it accepts none
        os.kill(link.pid, signal.SIGKILL)
        link.wait(10)
        producing.join(60)
        link = start_link(env, tmp_path)
        wait_until(lambda: sink.poll() >= 400, 90, "all 400 outcomes after the kill -9")

        # 2. the link goes down (the core's broker stops, losing its memory) while the van keeps
        # producing; the same forwarder, its producer included, carries on once it is back
        core = cut_and_restore(core, sink, tmp_path, van, 400, 200, link=None)
        wait_until(lambda: sink.poll() >= 600, 120, "all 600 outcomes after the link came back")

        # 3. the link goes down again and the forwarder is killed meanwhile (a power cut of the
        # van's link process): the queue on disk is all that is left of those outcomes
        core = cut_and_restore(core, sink, tmp_path, van, 600, 100, link=link, env=env)
        link = core.link
        wait_until(lambda: sink.poll() >= 700, 120, "all 700 outcomes after the kill -9 with the link down")
        box = Outbox(tmp_path / "outbox.sqlite")
        wait_until(lambda: box.backlog().rows == 0, 30, "the van's backlog drained")
        box.close()
        link.send_signal(signal.SIGTERM)
        assert link.wait(30) == 0
    finally:
        if link.poll() is None:
            link.kill()
        sink.close()
        core.stop()
    by_key = audit_sequence(sink.unique)
    assert sum(len(v) for v in by_key.values()) == 700  # none lost, none twice after de-dup by lfr_link_id
    for i, key in enumerate(KEYS):
        assert by_key[key] == list(range(i, 700, 5)), f"order of {key}"
    print(json.dumps({"duplicates_dropped_at_core": sink.duplicates}))


class ForgetfulOutbox(Outbox):
    """Loses every acknowledgement: what a power cut between the core's ack and the outbox's
    commit leaves behind."""

    def ack(self, seqs, now_ms=None) -> None:
        return None


def run_forwarder(outbox: Outbox, until) -> None:
    settings = load_settings(LinkSettings)
    forwarder = build(settings)
    forwarder.outbox.close()
    forwarder.outbox = outbox
    try:
        wait_until(lambda: (forwarder.step(), until())[1], 60, "the forwarder's work")
    finally:
        forwarder.close()


def test_a_record_sent_twice_is_kept_once_at_the_core(brokers, tmp_path, monkeypatch):
    van, core = brokers
    for name, value in link_env(van, core, tmp_path).items():
        monkeypatch.setenv(name, value)
    produce_outcomes(van.bootstrap_servers, 0, 50)
    sink = CoreSink(core.bootstrap_servers)
    raw = []
    run_forwarder(ForgetfulOutbox(tmp_path / "outbox.sqlite"), lambda: sink.poll() >= 50)
    run_forwarder(Outbox(tmp_path / "outbox.sqlite"), lambda: Outbox(tmp_path / "outbox.sqlite").backlog().rows == 0)
    wait_until(lambda: (sink.poll(), sink.duplicates)[1] >= 50, 30, "the second copies at the core")
    raw = every_core_record(core.bootstrap_servers)
    assert len([r for r in raw if r.topic() == topic_named("audit")]) == 100  # the broker holds both copies
    assert len(sink.unique) == 50 and sink.duplicates == 50  # the reader keeps one
    assert {link_id_of(r.headers()) for r in raw} == {link_id_of(r.headers()) for r in sink.unique}
    sink.close()


class FullDiskOutbox(Outbox):
    """Refuses its first writes as SQLite does on a full disk."""

    refusals = 3

    def enqueue(self, rows, now_ms=None) -> int:
        if self.refusals:
            self.refusals -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super().enqueue(rows, now_ms)


def test_a_full_outbox_pauses_intake_and_drops_nothing(brokers, tmp_path, monkeypatch):
    van, core = brokers
    for name, value in link_env(van, core, tmp_path, LFR_LINK_BATCH_MAX="10").items():
        monkeypatch.setenv(name, value)
    produce_outcomes(van.bootstrap_servers, 0, 50)
    sink = CoreSink(core.bootstrap_servers)
    full = FullDiskOutbox(tmp_path / "outbox.sqlite")
    run_forwarder(full, lambda: sink.poll() >= 50)
    assert full.refusals == 0 and metric("lfr_link_outbox_writable") == 1
    assert audit_sequence(sink.unique) == {k: list(range(i, 50, 5)) for i, k in enumerate(KEYS)}
    sink.close()
