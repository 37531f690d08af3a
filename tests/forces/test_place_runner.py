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
from services.pipeline.passthrough.stage import process as passthrough
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


def test_the_report_leaves_out_a_record_naming_another_force_than_its_deployments(broker, kafka_env, deployments, monkeypatch, capsys, tmp_path):
    """Place = the deployment it belongs to: on topics outside the lfr.<force>. scheme (named by
    hand), an alert, decision or count naming force gmp for force default's deployment is not counted."""
    import json
    import time

    from services.cli import main
    from services.pipeline.dispatch.policy import decide
    from tests.deployment_helpers import active_deployment
    from tests.dispatch.helpers import match
    from tests.kafka_helpers import produce_events

    deployments(active_deployment("dep-1", ["cam-1"]))  # signed and audited; force "Test Constabulary": default's
    topics = {name: unique(name) for name in ("alerts", "adjudications", "counts")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    now = int(time.time() * 1000)
    bodies = []
    for i, force in enumerate((None, None, "gmp")):
        _, alert = decide(None, match(subject=f"s{i}", camera="cam-1", deployment="dep-1", captured_at_ms=now - i), 60_000, now)
        bodies.append({**alert.data, **({"force": force} if force else {})})
    produce_events(broker.bootstrap_servers, topics["alerts"], "lfr.alerts.v3", bodies)
    counts = [{"count_id": f"in:0:{i}-{i}:1", "deployment_id": "dep-1", "faces": n, "counted_at_ms": now, **extra}
              for i, (n, extra) in enumerate(((10, {}), (500, {"force": "gmp"})))]
    produce_events(broker.bootstrap_servers, topics["counts"], "lfr.counts.v2", counts)
    before = REGISTRY.get_sample_value("lfr_force_mismatches_total", {"service": "report", "topic": topics["alerts"], "place": "deployment"}) or 0
    capsys.readouterr()
    assert main(["report", "--from", "2000-01-01", "--to", "2100-01-01", "--json", "--out", str(tmp_path)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["alerts"] == 2 and figures["faces"] == 10
    assert REGISTRY.get_sample_value("lfr_force_mismatches_total", {"service": "report", "topic": topics["alerts"], "place": "deployment"}) == before + 1
