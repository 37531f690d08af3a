"""The `not_stalled` readiness check (issue #14 point 4): a stage whose broker goes away while
work waits answers /readyz 503 naming the stall, sets `lfr_stalled`, and is ready again once
the broker is back.

A real runner on a real embedded broker of this test's own (the session broker must not be
stopped). The stage holds its first record until the broker is gone, so the runner has work
in hand (the record's output, the records behind it) that it cannot send.
"""

from __future__ import annotations

import threading

from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from services.common.broker import EmbeddedBroker
from services.common.jsonevents import decode_record
from services.common.health import Health
from services.common.runner import StageRunner
from services.common.settings import PassthroughSettings, load_settings
from services.common.stage import Output
from services.common.topics import TopicSpec, apply_topics
from tests.kafka_helpers import TopicReader, audit_record, produce, running_in_thread, unique, wait_until
from tests.test_health import _free_port, get

STALL_AFTER_S = 2
RECOVERY_BOUND_S = 30


def _stalled_gauge(service: str) -> float | None:
    return REGISTRY.get_sample_value("lfr_stalled", {"service": service})


def test_a_stage_whose_broker_goes_away_reports_not_ready_until_it_is_back(tmp_path, monkeypatch):
    source, sink, dlq = unique("stall-in"), unique("stall-out"), unique("stall-dlq")
    specs = [TopicSpec(name, 1, 1, False) for name in (source, sink, dlq)]
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    broker.start()
    apply_topics(AdminClient({"bootstrap.servers": broker.bootstrap_servers}), specs)
    env = {
        "LFR_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "LFR_SESSION_TIMEOUT_MS": "6000",
        "LFR_HEARTBEAT_INTERVAL_MS": "1000", "LFR_METRICS_PORT": "0", "LFR_SHUTDOWN_TIMEOUT_S": "20",
        "LFR_INPUT_TOPICS": source, "LFR_OUTPUT_TOPIC": sink, "LFR_DLQ_TOPIC": dlq, "LFR_GROUP_ID": unique("stall"),
        "LFR_STALL_AFTER_S": str(STALL_AFTER_S), "LFR_BATCH_MAX_MESSAGES": "1", "LFR_LAG_REPORT_INTERVAL_S": "0.5",
        # The bound on one batch's delivery (half of it) and on the producer's message timeout.
        "LFR_MAX_POLL_INTERVAL_MS": "10000",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    service = unique("stall-test")
    release, entered = threading.Event(), threading.Event()

    def stage(messages):
        for message in messages:
            if message.data["details"]["seq"] == 1 and not entered.is_set():
                entered.set()
                release.wait(60)  # holds the first record until the broker is gone
            yield Output(sink, message.schema, message.data, message.key)

    health = Health()
    server = health.serve(_free_port())
    runner = StageRunner(service, load_settings(PassthroughSettings), stage, [source], health=health)
    port = server.server_port
    try:
        with running_in_thread(runner) as result:
            wait_until(lambda: get(port, "/readyz")[0] == 200, 30, "the runner to join its group")
            assert get(port, "/readyz")[1]["checks"]["not_stalled"]["ok"]
            assert _stalled_gauge(service) == 0
            produce(broker.bootstrap_servers, source, [audit_record(i) for i in range(1, 6)], keys=[b"k"] * 5)
            assert entered.wait(30), "the stage never got the first record"

            # The broker goes away with the record's output unsent and four records behind it.
            broker.stop()
            release.set()
            # The kafka check fails too once its cached probe expires; the stall is the check that
            # says work is held back, not merely that the broker is unreachable.
            wait_until(lambda: not get(port, "/readyz")[1]["checks"]["not_stalled"]["ok"], 30, "/readyz to report the stall")
            status, body = get(port, "/readyz")
            assert status == 503 and body["status"] == "fail"
            check = body["checks"]["not_stalled"]
            assert not check["ok"] and check["detail"].endswith("s without progress")
            assert int(check["detail"].split()[0]) >= STALL_AFTER_S
            assert _stalled_gauge(service) == 1
            assert (REGISTRY.get_sample_value("lfr_seconds_since_progress", {"service": service}) or 0) > STALL_AFTER_S

            # The broker is back (empty, as the embedded broker always restarts) with its topics.
            broker.start()
            apply_topics(AdminClient({"bootstrap.servers": broker.bootstrap_servers}), specs)
            wait_until(lambda: get(port, "/readyz")[0] == 200, RECOVERY_BOUND_S, "/readyz to recover once the broker is back")
            assert get(port, "/readyz")[1]["checks"]["not_stalled"]["ok"]
            assert _stalled_gauge(service) == 0
            # And it works again: a record sent now comes out.
            produce(broker.bootstrap_servers, source, [audit_record(100)], keys=[b"k"])
            out = TopicReader(broker.bootstrap_servers, sink)
            try:
                wait_until(lambda: 100 in {decode_record(r.value(), r.headers()).data["details"]["seq"] for r in out.poll()},
                           RECOVERY_BOUND_S, "a record through the stage after the restart")
            finally:
                out.close()
        assert result["code"] == 0
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        broker.stop()
