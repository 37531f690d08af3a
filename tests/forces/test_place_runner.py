"""The runner refuses a governed record of another force than its topic's (issue #24): counted,
dead-lettered as force_mismatch without payload; the force's own records flow on."""

from __future__ import annotations

import functools
import uuid

from prometheus_client import REGISTRY

from services.common.envelope import encode
from services.common.jsonevents import decode_record
from services.common.runner import StageRunner
from services.common.settings import PassthroughSettings, load_settings
from services.passthrough.stage import process as passthrough
from tests.kafka_helpers import create_topics, produce, running_in_thread, unique


def record(i: int, force: str | None) -> bytes:
    data = {"actor": "test", "action": "test.seq", "at_ms": i, "service": "tests", "details": {"seq": i}}
    return encode("lfr.audit.v2", {**data, "force": force} if force else data)


def test_the_runner_dead_letters_another_forces_record_without_payload(broker, kafka_env, monkeypatch, reader):
    force, other = f"p{uuid.uuid4().hex[:6]}", f"q{uuid.uuid4().hex[:6]}"
    source, sink, dlq = f"lfr.{force}.audit.v2", unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq, partitions=1)
    for name, value in (("INPUT_TOPICS", source), ("OUTPUT_TOPIC", sink), ("DLQ_TOPIC", dlq), ("GROUP_ID", unique("place"))):
        monkeypatch.setenv(f"LFR_{name}", value)
    settings = load_settings(PassthroughSettings)
    # force's own, force B's name on force A's topic, no name (force default's), force's own
    produce(broker.bootstrap_servers, source, [record(0, force), record(1, other), record(2, None), record(3, force)], keys=[b"k"] * 4)
    runner = StageRunner("place-test", settings, functools.partial(passthrough, output_topic=sink), [source])
    out, dead = reader(sink), reader(dlq)
    with running_in_thread(runner):
        passed = out.read_until(2)
        letters = dead.read_until(2)
    assert sorted(decode_record(r.value(), r.headers()).data["details"]["seq"] for r in passed) == [0, 3]
    headers = [{k: v.decode() for k, v in letter.headers()} for letter in letters]
    assert [h["lfr_dlq_reason"] for h in headers] == ["force_mismatch", "force_mismatch"]
    assert [h["lfr_dlq_payload"] for h in headers] == ["withheld", "withheld"]
    assert all(letter.value() is None for letter in letters)
    assert sorted(int(h["lfr_dlq_offset"]) for h in headers) == [1, 2]
    assert REGISTRY.get_sample_value("lfr_force_mismatches_total", {"service": "place-test", "topic": source, "place": "topic"}) == 2
