"""/livez and /readyz: the Health registry, its HTTP server, and a live runner made to hang."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from services.common.health import CachedCheck, Health
from services.common.runner import StageRunner
from services.common.settings import PassthroughSettings, load_settings
from services.common.stage import Output
from tests.kafka_helpers import audit_record, create_topics, produce, running_in_thread, unique, wait_until


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_fails_after_the_bound_unless_idle_by_choice():
    clock = FakeClock()
    health = Health(clock)
    assert health.liveness() == (True, {})  # starting: no loop yet
    health.heartbeat("loop", bound_s=10)
    clock.now += 9
    assert health.liveness()[0]
    clock.now += 2
    ok, checks = health.liveness()
    assert not ok and not checks["loop"]["ok"] and "11.0 s ago" in checks["loop"]["detail"]
    with health.idle("loop"):
        clock.now += 1000
        ok, checks = health.liveness()
        assert ok and checks["loop"]["detail"] == "idle by choice"
    assert health.liveness()[0]  # leaving the idle block is progress


def test_readiness_needs_every_check_and_survives_a_raising_one():
    health = Health()
    assert health.readiness() == (False, {})  # nothing registered: still starting
    health.add_check("flag", lambda: True)
    health.add_check("detail", lambda: (False, "loading"))
    ok, checks = health.readiness()
    assert not ok and checks == {"flag": {"ok": True, "detail": ""}, "detail": {"ok": False, "detail": "loading"}}
    health.add_check("detail", lambda: 1 / 0)
    assert health.readiness()[1]["detail"] == {"ok": False, "detail": "check raised ZeroDivisionError"}
    health.remove_check("detail")
    assert health.readiness()[0]


def test_cached_check_calls_through_at_most_once_per_ttl():
    clock, calls = FakeClock(), []
    check = CachedCheck(lambda: calls.append(1) or True, ttl_s=5, clock=clock)
    assert check() and check() and len(calls) == 1
    clock.now += 5
    assert check() and len(calls) == 2


def test_endpoints_serve_json_and_status_beside_metrics():
    health = Health()
    server = health.serve(_free_port())
    try:
        port = server.server_port
        assert get(port, "/readyz") == (503, {"status": "fail", "checks": {}})
        health.add_check("thing", lambda: (True, "fine"))
        assert get(port, "/readyz") == (200, {"status": "ok", "checks": {"thing": {"ok": True, "detail": "fine"}}})
        assert get(port, "/livez")[0] == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"# HELP" in response.read()
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    from services.common.broker import free_port

    return free_port()


def test_a_hanging_stage_fails_livez_and_a_running_one_is_ready(broker, kafka_env, monkeypatch):
    """A real runner on the embedded broker: ready once in the group; its stage then blocks on a
    record, and /livez turns 503 naming the loop within the bound; released, it recovers."""
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq, partitions=1)
    for name, value in {"LFR_INPUT_TOPICS": source, "LFR_OUTPUT_TOPIC": sink, "LFR_DLQ_TOPIC": dlq,
                        "LFR_GROUP_ID": unique("hang"), "LFR_LIVENESS_TIMEOUT_S": "1"}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(PassthroughSettings)
    release, entered = threading.Event(), threading.Event()

    def stage(messages):
        for message in messages:
            if message.data["details"]["seq"] == 1:
                entered.set()
                release.wait(60)  # the hang: a stage stuck on a dependency that never answers
            yield Output(sink, message.key, message.schema, message.data)

    health = Health()
    server = health.serve(_free_port())
    runner = StageRunner("hang-test", settings, stage, [source], health=health)
    try:
        port = server.server_port
        with running_in_thread(runner):
            wait_until(lambda: get(port, "/readyz")[0] == 200, 30, "the runner to join its group")
            checks = get(port, "/readyz")[1]["checks"]
            assert checks["kafka"]["ok"] and checks["partitions_assigned"]["detail"] == "1 partition(s) assigned"
            assert get(port, "/livez")[0] == 200  # idle (no records) is alive
            produce(broker.bootstrap_servers, source, [audit_record(1)])
            assert entered.wait(30)
            wait_until(lambda: get(port, "/livez")[0] == 503, 10, "/livez to fail while the stage hangs")
            body = get(port, "/livez")[1]
            assert body["status"] == "fail" and not body["checks"]["hang-test"]["ok"]
            release.set()
            wait_until(lambda: get(port, "/livez")[0] == 200, 10, "/livez to recover once the stage returns")
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path", ["/livez", "/readyz"])
def test_unknown_paths_still_serve_metrics(path):
    # Regression guard for the dispatcher: one server, three paths; anything else is /metrics.
    health = Health()
    health.add_check("x", lambda: True)
    health.heartbeat("l")
    server = health.serve(_free_port())
    try:
        assert get(server.server_port, path)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_spare_replica_without_partitions_is_ready(broker, kafka_env, monkeypatch):
    """Two runners of one group on a one-partition topic: both join, one gets the partition,
    and both report ready (a spare is not a broken pod)."""
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq, partitions=1)
    for name, value in {"LFR_INPUT_TOPICS": source, "LFR_OUTPUT_TOPIC": sink, "LFR_DLQ_TOPIC": dlq,
                        "LFR_GROUP_ID": unique("spare")}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(PassthroughSettings)
    healths = [Health(), Health()]
    runners = [StageRunner(f"spare-{i}", settings, lambda batch: [], [source], health=h) for i, h in enumerate(healths)]
    with running_in_thread(runners[0]), running_in_thread(runners[1]):
        wait_until(lambda: all(h.readiness()[0] for h in healths), 45, "both runners to report ready")
        details = sorted(h.readiness()[1]["partitions_assigned"]["detail"] for h in healths)
    assert details == ["0 partition(s) assigned", "1 partition(s) assigned"]
