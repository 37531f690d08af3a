"""The audit hash chain: any one record edited, removed, reordered or inserted is named by
`lfr audit verify`; and the measured reason the writer does not rely on Kafka transactions."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.governance.audit.chain import GENESIS, Position, record_hash, seal, verify_chain
from services.governance.audit.writer import AuditWriter
from services.cli import main as lfr
from services.common.jsonevents import encode
from services.common.settings import AuditSettings, load_settings
from services.common.signing import Keyring, Signer
from tests.kafka_helpers import create_topics, unique

N = 6


@pytest.fixture
def keys(tmp_path):
    writer = Signer.generate("Sgt 7 Writer")
    ring = Keyring(tmp_path / "ring.json")
    ring.add(writer, 0)
    return writer, ring


def chain(signer: Signer, n: int = N) -> list[dict]:
    records, prev = [], GENESIS
    for i in range(n):
        record = seal({"action": "watchlist.add", "at_ms": 1000 + i, "service": "test", "subject_id": f"s{i}"}, signer, i, prev)
        records.append(record)
        prev = record_hash(record)
    return records


def positions(records) -> list[Position]:
    return [Position(offset, record) for offset, record in enumerate(records)]


def test_intact_chain_verifies(keys):
    writer, ring = keys
    report = verify_chain(positions(chain(writer)), ring)
    assert report.ok and report.records == N and report.head_seq == N - 1


@pytest.mark.parametrize("index", range(N))
def test_each_single_tampering_is_named(keys, index):
    writer, ring = keys
    records = chain(writer)
    # edited: any field changed
    edited = [dict(r) for r in records]
    edited[index]["subject_id"] = "someone-else"
    problem = verify_chain(positions(edited), ring).problem
    assert (problem.kind, problem.offset, problem.seq) == ("edited", index, index)
    # removed: the record after the gap is named (the last one's removal needs an anchor)
    removed = records[:index] + records[index + 1:]
    report = verify_chain(positions(removed), ring, anchor=record_hash(records[-1]))
    if index < N - 1:
        assert (report.problem.kind, report.problem.offset, report.problem.seq) == ("removed", index, index + 1)
        assert f"seq {index} before it is missing" in report.problem.detail
    else:
        assert report.problem.kind == "truncated" and verify_chain(positions(removed), ring).ok
    # reordered: swapped with its neighbour
    if index < N - 1:
        swapped = list(records)
        swapped[index], swapped[index + 1] = swapped[index + 1], swapped[index]
        problem = verify_chain(positions(swapped), ring).problem
        assert (problem.kind, problem.offset, problem.seq) == ("reordered", index, index + 1)
    # inserted: a forged record (untrusted key), an unsigned one, and a copy of a real one
    forger = Signer.generate("Sgt 7 Writer")
    prev = record_hash(records[index - 1]) if index else GENESIS
    forged = seal({"action": "watchlist.remove", "at_ms": 5, "service": "test", "subject_id": "s0"}, forger, index, prev)
    unsigned = {k: v for k, v in forged.items() if k != "signature"}
    copies = [records[index - 1]] if index else []  # a copy of the record just before, signature and all
    for inserted in (forged, unsigned, *copies):
        tampered = records[:index] + [inserted] + records[index:]
        problem = verify_chain(positions(tampered), ring).problem
        assert (problem.kind, problem.offset) == ("inserted", index), (index, problem)


def test_lfr_audit_verify_reads_the_topic_and_names_the_record(broker, kafka_env, monkeypatch, capsys, keys, tmp_path):
    """Records written by the one writer verify; a copy of the topic with one record edited,
    removed, moved or inserted (what someone with access to the broker's storage could do) fails,
    and the command names the record."""
    writer_key, ring = keys
    ring.save()
    monkeypatch.setenv("LFR_KEYRING_FILE", str(ring.path))
    topic = unique("audit")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    settings = load_settings(AuditSettings)
    writer = AuditWriter(settings, topic, writer_key, "test")
    written = [writer.write("watchlist.add", f"s{i}", {"n": i}, requested_by="free text") for i in range(N)]
    writer.close()
    assert lfr(["audit", "verify", "--topic", topic]) == 0
    assert f"{N} records, chain intact" in capsys.readouterr().out

    values = read_values(broker.bootstrap_servers, topic)
    records = [json_record(v) for v in values]
    assert [r["actor"] for r in records] == ["Sgt 7 Writer"] * N and records[0]["details"]["requested_by"] == "free text"
    # On the wire: plain JSON CloudEvents (lfr.audit.v2) whose ce_id is the chain hash; the hash
    # and signature are over the record's canonical JSON, so reading it back gives the same hash.
    for (value, headers), (sealed, digest) in zip(values, written, strict=True):
        attrs = dict((name, raw.decode()) for name, raw in headers)
        assert attrs["content-type"] == "application/json" and attrs["ce_type"] == "org.openlfr.audit.recorded"
        assert attrs["ce_id"] == digest == record_hash(json.loads(value)) and json.loads(value) == sealed
        assert attrs["ce_subject"] == sealed["subject_id"] and attrs["ce_dataschema"].endswith("/lfr.audit.v2.json")
    edited = dict(records[2], subject_id="s9")
    cases = {
        "edited": (values[:2] + [encode("lfr.audit.v2", edited)] + values[3:], "offset 2 (seq 2): edited"),
        "removed": (values[:2] + values[3:], "offset 2 (seq 3): removed"),
        "reordered": (values[:2] + [values[3], values[2]] + values[4:], "offset 2 (seq 3): reordered"),
        "inserted": (values[:2] + [values[0]] + values[2:], "offset 2 (seq 0): inserted"),
    }
    for name, (tampered, expected) in cases.items():
        copy = unique(f"audit-{name}")
        create_topics(broker.bootstrap_servers, copy, partitions=1)
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        for value, headers in tampered:
            producer.produce(copy, value=value, headers=headers)
        producer.flush(10)
        assert lfr(["audit", "verify", "--topic", copy]) == 1, name
        assert expected in capsys.readouterr().out, name

    assert lfr(["audit", "show", "--topic", topic, "--subject", "s3", "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["subject_id"], r["seq"]) for r in shown] == [("s3", 3)]
    assert lfr(["audit", "show", "--topic", topic, "--actor", "nobody"]) == 0 and capsys.readouterr().out == ""


def json_record(record: tuple[bytes, list]) -> dict:
    from services.common.jsonevents import decode_record

    return decode_record(*record).data


def read_values(bootstrap: str, topic: str) -> list[tuple[bytes, list]]:
    """(value, headers) of each record of partition 0."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("g"), "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values = []
    while True:
        message = consumer.poll(5)
        if message is None or message.error() is not None:
            break
        values.append((message.value(), message.headers() or []))
    consumer.close()
    return values


def test_embedded_broker_transactions_do_not_hide_aborted_records(broker):
    """Measured fact behind the audit-first design (services/governance/audit/writer.py): Tansu 0.6 with
    memory storage accepts transactional producers, but a read_committed consumer still reads
    records of an aborted transaction, so "change + audit in one transaction" would not be atomic
    here. If this test starts failing, the broker hides aborted records and transactions can be used."""
    topic = unique("txn")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "transactional.id": unique("tx")})
    producer.init_transactions(10)
    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(10)
    producer.abort_transaction(10)
    producer.begin_transaction()
    producer.produce(topic, b"committed")
    producer.commit_transaction(10)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": unique("g"),
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = []
    while True:
        message = consumer.poll(5)
        if message is None or message.error() is not None:
            break
        seen.append(message.value())
    consumer.close()
    assert seen == [b"aborted", b"committed"]


class RacedWriter(AuditWriter):
    """A writer that lets another write land between reading its tail and appending: the race
    two processes on one partition run into (the matcher's replicas audit the same refusal)."""

    def __init__(self, *args, before_append=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.before_append = before_append

    def _tail(self):
        tail = super()._tail()
        if self.before_append is not None:
            racer, self.before_append = self.before_append, None
            racer()
        return tail


def test_concurrent_writers_fork_the_chain_and_the_join_keeps_it_verifiable(broker, kafka_env, monkeypatch, capsys, keys):
    """Two writers on one partition: the second to land joins the records that got in between, so
    `lfr audit verify` passes (it failed as "inserted" before joins), and removing the raced
    record afterwards is still caught."""
    writer_key, ring = keys
    other_key = Signer.generate("Sgt 8 Other")
    ring.add(other_key, 0)
    ring.save()
    monkeypatch.setenv("LFR_KEYRING_FILE", str(ring.path))
    topic = unique("audit-race")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    settings = load_settings(AuditSettings)
    other = AuditWriter(settings, topic, other_key, "other")
    other.write("watchlist.add", "s0", {"n": 0})
    racing = RacedWriter(settings, topic, writer_key, "racing",
                         before_append=lambda: [other.write("watchlist.add", f"r{i}", {"n": i}) for i in range(2)])
    racing.write("watchlist.remove", "s0", {"n": 1})
    other.write("watchlist.add", "s1", {"n": 2})  # after the join: follows it
    other.close()
    racing.close()

    values = read_values(broker.bootstrap_servers, topic)
    records = [json_record(v) for v in values]
    assert [r["action"] for r in records] == ["watchlist.add", "watchlist.add", "watchlist.add", "watchlist.remove", "audit.joined",
                                              "watchlist.add"]
    assert records[4]["joins"] == [record_hash(records[1]), record_hash(records[2])]
    report = verify_chain(positions(records), ring)
    assert report.ok and report.forks == 1 and report.unjoined == () and report.records == 6
    assert lfr(["audit", "verify", "--topic", topic]) == 0
    assert "6 records, chain intact (1 forks from concurrent writers, joined)" in capsys.readouterr().out

    # Each raced record is referenced by the join: removing one is named.
    for index in (1, 2):
        problem = verify_chain(positions(records[:index] + records[index + 1:]), ring).problem
        assert problem is not None and problem.kind == "removed", (index, problem)
    # Without the join (a writer stopped after its raced append), the chain verifies with a warning.
    report = verify_chain(positions(records[:4]), ring)
    assert report.ok and report.unjoined == (2,)


def test_lfr_audit_migrate_copies_a_v1_trail_with_its_hashes(broker, kafka_env, monkeypatch, capsys, keys):
    """The v1 trail (binary envelopes) copied into lfr.audit.v2 (plain JSON) keeps every hash:
    the chain verifies with the same head, the audit index confirms a change audited in v1, and
    the writer goes on from the copied head. A second copy, or a broken old chain, is refused."""
    from services.governance.audit.index import AuditIndex
    from services.governance.audit.writer import change_digest
    from services.common import envelope

    writer_key, ring = keys
    ring.save()
    monkeypatch.setenv("LFR_KEYRING_FILE", str(ring.path))
    old, new = unique("audit-v1"), unique("audit-v2")
    create_topics(broker.bootstrap_servers, old, new, partitions=1)
    digest = change_digest("lfr.watchlist.v1", b"s1", b"entry")
    records, prev = [], GENESIS
    for i in range(4):
        details = {"change_sha256": digest} if i == 1 else {"n": i}
        records.append(seal({"action": "watchlist.add", "at_ms": 1000 + i, "service": "test", "subject_id": f"s{i}",
                             "details": details}, writer_key, i, prev))
        prev = record_hash(records[-1])
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for record in records:  # as the v1 writer wrote them: envelopes, no headers
        producer.produce(old, key=record["subject_id"].encode(), value=envelope.encode("lfr.audit.v2", record))  # same fields as v1
    producer.flush(10)

    assert lfr(["audit", "verify", "--topic", old]) == 0  # the readers still read the old format
    capsys.readouterr()
    assert lfr(["audit", "migrate", "--from", old, "--to", new]) == 0
    assert f"4 records, head {prev} (unchanged)" in capsys.readouterr().out
    copied = read_values(broker.bootstrap_servers, new)
    assert [json_record(v) for v in copied] == records
    assert all(dict(headers)["content-type"] == b"application/json" for _, headers in copied)
    settings = load_settings(AuditSettings)
    index = AuditIndex(settings, new, ring)
    try:
        assert index.confirms(record_hash(records[1]), "lfr.watchlist.v1", b"s1", b"entry")
    finally:
        index.close()
    writer = AuditWriter(settings, new, writer_key, "test")
    sealed, _ = writer.write("watchlist.remove", "s1", {"n": 9})
    writer.close()
    assert (sealed["seq"], sealed["prev_hash"]) == (4, prev)
    assert lfr(["audit", "verify", "--topic", new]) == 0

    assert lfr(["audit", "migrate", "--from", old, "--to", new]) == 1  # the new trail is no longer empty
    assert "already holds records, nothing copied" in capsys.readouterr().err
    broken = unique("audit-broken")
    create_topics(broker.bootstrap_servers, broken, partitions=1)
    for record in records[:1] + records[2:]:  # one removed
        producer.produce(broken, value=envelope.encode("lfr.audit.v2", record))
    producer.flush(10)
    assert lfr(["audit", "migrate", "--from", broken, "--to", unique("unused")]) == 1
    assert "does not verify, nothing copied" in capsys.readouterr().err
