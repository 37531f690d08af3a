"""`lfr dlq list|show|replay` against the embedded broker, on dead letters a real runner wrote."""

from __future__ import annotations

import functools
import json
import time

import pytest
from confluent_kafka import Producer

from services.cli import main as lfr
from services.common.jsonevents import decode_record
from services.common.runner import StageRunner
from services.common.settings import PassthroughSettings, load_settings
from services.operations.dlq.records import DeadLetter, Filter, parse_when
from services.pipeline.passthrough.stage import process as passthrough
from tests.kafka_helpers import audit_record, create_topics, produce, running_in_thread, unique


def _dead_letter(value: bytes | None, source: str, payload: str | None, offset: int, reason: str = "stage_error") -> dict:
    headers = {"lfr_dlq_topic": source, "lfr_dlq_partition": "0", "lfr_dlq_offset": str(offset),
               "lfr_dlq_service": "embed", "lfr_dlq_reason": reason, "lfr_dlq_error_class": "X",
               "lfr_dlq_error": "x", "lfr_dlq_at_ms": str(int(time.time() * 1000))}
    if payload:
        headers["lfr_dlq_payload"] = payload
    return {"value": value, "headers": list(headers.items())}


@pytest.fixture(scope="module")
def dead_letters(broker):
    """A pass-through runner dead-letters two bad records from `source`; two more dead letters
    (withheld and truncated payloads, as the privacy and reliability work write them) from `faces`.
    Module-scoped (one runner for the file): only the last test replays."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _dead_letters(broker, monkeypatch)


def _dead_letters(broker, monkeypatch):
    source, sink, dlq, audit, faces = (unique(n) for n in ("in", "out", "dlq", "audit", "faces"))
    create_topics(broker.bootstrap_servers, source, sink, dlq, audit, faces, partitions=1)
    for name, value in {"LFR_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "LFR_SESSION_TIMEOUT_MS": "6000",
                        "LFR_HEARTBEAT_INTERVAL_MS": "1000", "LFR_METRICS_PORT": "0", "LFR_SHUTDOWN_TIMEOUT_S": "20",
                        "LFR_INPUT_TOPICS": source, "LFR_OUTPUT_TOPIC": sink, "LFR_DLQ_TOPIC": dlq,
                        "LFR_GROUP_ID": unique("dlqt"), "LFR_AUDIT_TOPIC": audit}.items():
        monkeypatch.setenv(name, value)
    produce(broker.bootstrap_servers, source, [audit_record(0), b"not an envelope", audit_record(2), b"\x00junk"],
            keys=[b"k0", b"k1", b"k2", b"k3"])
    runner = StageRunner("dlq-test", load_settings(PassthroughSettings), functools.partial(passthrough, output_topic=sink), [source])
    from tests.kafka_helpers import TopicReader

    with running_in_thread(runner):
        reader = TopicReader(broker.bootstrap_servers, dlq)
        reader.read_until(2)
        reader.close()
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for i, payload in enumerate(("withheld", "truncated")):
        letter = _dead_letter(None if payload == "withheld" else b"\x01" * 10, faces, payload, offset=i)
        producer.produce(dlq, key=b"face", **letter)
    assert producer.flush(10) == 0
    return {"source": source, "dlq": dlq, "audit": audit, "faces": faces, "bootstrap": broker.bootstrap_servers}


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_list_filters_by_source_reason_service_and_time(dead_letters, capsys):
    d = dead_letters
    base = ["dlq", "list", "--json", "--bootstrap-servers", d["bootstrap"]]
    assert lfr(base) == 0
    rows = _lines(capsys)
    assert len(rows) == 4
    assert {r["payload"] for r in rows} == {"original", "withheld", "truncated"}
    assert all("value" not in r for r in rows)  # metadata only
    assert lfr([*base, "--source-topic", d["source"]]) == 0
    rows = _lines(capsys)
    assert [r["reason"] for r in rows] == ["decode_error", "decode_error"] and {r["service"] for r in rows} == {"dlq-test"}
    assert lfr([*base, "--service", "embed", "--reason", "stage_error"]) == 0
    assert len(_lines(capsys)) == 2
    assert lfr([*base, "--since", "1h"]) == 0 and len(_lines(capsys)) == 4
    assert lfr([*base, "--until", "1h"]) == 0 and _lines(capsys) == []


def test_show_prints_headers_never_the_payload(dead_letters, capsys):
    d = dead_letters
    assert lfr(["dlq", "list", "--json", "--bootstrap-servers", d["bootstrap"], "--source-topic", d["source"]]) == 0
    first = _lines(capsys)[0]["id"]
    assert lfr(["dlq", "show", first, "--bootstrap-servers", d["bootstrap"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source_topic"] == d["source"] and shown["key"] == "k1" and shown["schema"].startswith("unreadable")
    assert lfr(["dlq", "show", "0:999", "--bootstrap-servers", d["bootstrap"]]) == 1


def test_replay_republishes_originals_audited_and_refuses_withheld_payloads(dead_letters, capsys, reader):
    d = dead_letters
    # Without ids or --all nothing happens; --dry-run sends and audits nothing.
    assert lfr(["dlq", "replay", "--actor", "a", "--why", "w", "--bootstrap-servers", d["bootstrap"]]) == 2
    assert lfr(["dlq", "replay", "--all", "--source-topic", d["source"], "--dry-run", "--actor", "a", "--why", "w",
                "--bootstrap-servers", d["bootstrap"]]) == 0
    assert [o["status"] for o in _lines(capsys)] == ["would_replay", "would_replay"]
    assert len(reader(d["source"]).read_until(4)) == 4 and reader(d["audit"]).poll() == []

    assert lfr(["dlq", "list", "--json", "--bootstrap-servers", d["bootstrap"]]) == 0
    ids = {r["payload"] + ":" + r["source_topic"]: r["id"] for r in _lines(capsys)}
    assert lfr(["dlq", "list", "--json", "--bootstrap-servers", d["bootstrap"], "--source-topic", d["source"]]) == 0
    rows = _lines(capsys)
    originals = [r["id"] for r in rows]
    withheld = [i for k, i in ids.items() if not k.startswith("original")]
    code = lfr(["dlq", "replay", *originals, *withheld, "--actor", "ops-test", "--why", "decoder fixed",
                "--bootstrap-servers", d["bootstrap"]])
    assert code == 3  # something was refused
    out = _lines(capsys)
    assert sorted(o["status"] for o in out) == ["refused", "refused", "replayed", "replayed"]
    assert {o["id"] for o in out if o["status"] == "refused"} == set(withheld)

    source = reader(d["source"]).read_until(6)  # 4 originals + 2 replays
    replays = [r for r in source if any(k == "lfr_replay_of" for k, _ in r.headers() or ())]
    assert sorted((r.key(), r.value()) for r in replays) == [(b"k1", b"not an envelope"), (b"k3", b"\x00junk")]
    assert not any(k.startswith("lfr_dlq_") for r in replays for k, _ in r.headers())
    assert reader(d["faces"]).poll() == []  # nothing withheld or truncated was sent anywhere

    audits = [decode_record(r.value(), r.headers()).data for r in reader(d["audit"]).read_until(2)]
    # The actor is the signing key's owner; --actor is kept as the claim requested_by (services/governance/audit).
    assert {a["action"] for a in audits} == {"dlq.replay"} and {a["actor"] for a in audits} == {"test:operator"}
    assert {a["details"]["requested_by"] for a in audits} == {"ops-test"}
    assert {a["details"]["dlq_id"] for a in audits} == set(originals)
    assert all(a["details"]["why"] == "decoder fixed" for a in audits)


def test_missing_payload_header_means_original_and_time_forms_parse():
    letter = DeadLetter(0, 5, b"k", b"v", (("lfr_dlq_topic", b"t"), ("lfr_dlq_reason", b"decode_error")))
    assert letter.payload == "original" and letter.replayable
    assert not DeadLetter(0, 6, None, None, (("lfr_dlq_topic", b"t"), ("lfr_dlq_payload", b"withheld"))).replayable
    assert Filter(reason="decode_error")(letter) and not Filter(reason="stage_error")(letter)
    assert parse_when("2h", now_ms=10_000_000) == 10_000_000 - 7_200_000
    assert parse_when("2026-01-01T00:00:00") == parse_when("2026-01-01T00:00:00+00:00")
    with pytest.raises(ValueError, match="neither a duration"):
        parse_when("yesterday")
