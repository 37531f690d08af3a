"""Broker restart and loss (issue #14): the embedded broker dies and comes back empty.

Before: services stayed up but silent (ingest's idempotent producer looped on
UnknownProducerId, no frame flowed for 90 s, nothing was counted), and producers re-created
topics with the broker's default partitions. Now `lfr broker` (BrokerSupervisor) restarts the
broker and re-applies the topics, clients never auto-create topics, producers that the broker
forgot are replaced, and the services resume within RECOVERY_BOUND_S.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

import cv2
import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common.broker import EmbeddedBroker
from services.common.broker_supervisor import BrokerSupervisor
from services.common.jsonevents import decode_record
from services.common.runner import StageRunner
from services.common.settings import IngestSettings, PassthroughSettings, load_settings
from services.common.topics import TopicSpec
from services.pipeline.ingest.cameras import CameraConfig, save_cameras
from services.pipeline.ingest.service import IngestService
from services.pipeline.passthrough.stage import process as passthrough
from tests.kafka_helpers import TopicReader, audit_record, produce, running_in_thread, unique, wait_until

RECOVERY_BOUND_S = 30
STAGE_RECOVERY_BOUND_S = 12  # one stage: below the 15 s delivery timeout it used to wait out


@pytest.fixture
def own_broker(tmp_path, monkeypatch):
    """A broker of this test's own (the session broker must not be killed), under `lfr broker`'s supervisor."""
    topics = {name: unique(name) for name in ("in", "out", "dlq", "frames", "deployments", "audit")}
    specs = [TopicSpec(name, 1, 1, False) for name in topics.values()]
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    reports: list[str] = []
    supervisor = BrokerSupervisor(broker, specs, memory_warn_bytes=2**40, check_interval_s=0.2, report=reports.append)
    supervisor.start()
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    env = {
        "LFR_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "LFR_SESSION_TIMEOUT_MS": "6000",
        "LFR_HEARTBEAT_INTERVAL_MS": "1000",
        "LFR_METRICS_PORT": "0",
        "LFR_SHUTDOWN_TIMEOUT_S": "20",
        "LFR_INPUT_TOPICS": topics["in"],
        "LFR_OUTPUT_TOPIC": topics["out"],
        "LFR_DLQ_TOPIC": topics["dlq"],
        "LFR_GROUP_ID": unique("restart"),
        "LFR_STALL_AFTER_S": "2",
        "LFR_DEPLOYMENTS_TOPIC": topics["deployments"],
        "LFR_AUDIT_TOPIC": topics["audit"],  # the deployment's audit record, which ingest's view checks
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from tests.deployment_helpers import active_deployment, publish_deployment

    # Ingest captures only for an active deployment (#10); its view keeps the state it loaded.
    publish_deployment(broker.bootstrap_servers, topics["deployments"], active_deployment("d", ["cam-r", "cam-lost"]))
    yield broker, supervisor, topics, reports
    supervisor.stop()
    thread.join(20)
    broker.stop()


def crash(broker: EmbeddedBroker, supervisor: BrokerSupervisor) -> float:
    restarts = supervisor.restarts
    os.kill(broker.pid, signal.SIGKILL)
    wait_until(lambda: supervisor.restarts > restarts and broker.running, 30, "the supervisor to restart the broker")
    return time.monotonic()


def seqs(reader: TopicReader) -> set[int]:
    return {decode_record(r.value(), r.headers()).data["details"]["seq"] for r in reader.poll()}


def test_runner_resumes_after_the_broker_restarts_empty(own_broker):
    broker, supervisor, topics, reports = own_broker
    bootstrap = broker.bootstrap_servers
    # Other idempotent producers first (as in a pipeline), so the runner's producer id is one the
    # restarted broker has not handed out again: it answers UnknownProducerId, which librdkafka
    # retries until the delivery timeout, rather than a sequence error it reports at once.
    for i in range(4):
        produce(bootstrap, topics["dlq"], [audit_record(i)], keys=[b"other"])
    runner = StageRunner("restart-test", load_settings(PassthroughSettings), functools.partial(passthrough, output_topic=topics["out"]), [topics["in"]])
    with running_in_thread(runner) as result:
        produce(bootstrap, topics["in"], [audit_record(i) for i in range(5)], keys=[b"k"] * 5)
        first = TopicReader(bootstrap, topics["out"])
        wait_until(lambda: seqs(first) == set(range(5)), 30, "records before the restart")
        first.close()
        restarted_at = crash(broker, supervisor)
        assert any("re-applying topics" in line for line in reports)
        produce(bootstrap, topics["in"], [audit_record(i) for i in range(100, 105)], keys=[b"k"] * 5)
        after = TopicReader(bootstrap, topics["out"])
        wait_until(lambda: set(range(100, 105)) <= seqs(after), RECOVERY_BOUND_S, "records after the restart")
        recovery_s = time.monotonic() - restarted_at
        after.close()
    assert result["code"] == 0
    assert recovery_s < RECOVERY_BOUND_S
    # The group forgot the runner, so its producer is replaced at once instead of after the
    # 15 s delivery timeout (three stages in series took 50 s before the first alert).
    print("runner recovery after a broker restart:", round(recovery_s, 2), "s")
    assert recovery_s < STAGE_RECOVERY_BOUND_S
    # The topics came back as topics.toml says (1 partition here), not as auto-created defaults.
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert len(metadata[topics["out"]].partitions) == 1


def test_clients_do_not_auto_create_topics(own_broker):
    from confluent_kafka import Producer

    from services.common.kafka_config import producer_config
    from services.common.settings import KafkaSettings

    broker, _supervisor, _topics, _reports = own_broker
    missing = unique("never-created")
    producer = Producer({**producer_config(load_settings(KafkaSettings)), "message.timeout.ms": 3000})
    errors = []
    producer.produce(missing, value=b"x", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(10)
    from confluent_kafka.admin import AdminClient

    assert errors and errors[0] is not None
    assert missing not in AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10).topics


def test_ingest_resumes_and_counts_unsent_frames_after_the_broker_restarts(own_broker, tmp_path, monkeypatch):
    broker, supervisor, topics, _reports = own_broker
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((60, 80, 3), 90, np.uint8))
    cameras = tmp_path / "cameras.json"
    save_cameras(cameras, {"cam-r": CameraConfig(id="cam-r", deployment_id="d", source=f"folder:{folder}", fps=10)})
    monkeypatch.setenv("LFR_CAMERAS_FILE", str(cameras))
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", topics["frames"])
    service = IngestService(load_settings(IngestSettings))
    with running_in_thread(service):
        before = TopicReader(broker.bootstrap_servers, topics["frames"])
        before.read_until(3)
        before.close()
        restarted_at = crash(broker, supervisor)
        after = TopicReader(broker.bootstrap_servers, topics["frames"])
        after.read_until(3, timeout_s=RECOVERY_BOUND_S)
        recovery_s = time.monotonic() - restarted_at
        after.close()
    assert recovery_s < RECOVERY_BOUND_S


def _dropped(camera: str, reason: str) -> float:
    return REGISTRY.get_sample_value("lfr_frames_dropped_total", {"camera": camera, "reason": reason}) or 0.0


def test_ingest_counts_frames_it_could_not_send_by_reason(own_broker, tmp_path, monkeypatch):
    """A topic that does not exist (the broker lost it) is neither auto-created nor a silent stall."""
    broker, _supervisor, _topics, _reports = own_broker
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((60, 80, 3), 90, np.uint8))
    cameras = tmp_path / "cameras.json"
    save_cameras(cameras, {"cam-lost": CameraConfig(id="cam-lost", deployment_id="d", source=f"folder:{folder}", fps=10)})
    missing = unique("lost-frames")
    monkeypatch.setenv("LFR_CAMERAS_FILE", str(cameras))
    monkeypatch.setenv("LFR_OUTPUT_TOPIC", missing)
    monkeypatch.setenv("LFR_MAX_FRAME_AGE_MS", "500")
    service = IngestService(load_settings(IngestSettings))
    with running_in_thread(service):
        wait_until(lambda: _dropped("cam-lost", "timed_out") >= 1, 30, "frames counted as timed_out")
        wait_until(lambda: service.stall.stalled, 10, "ingest to report itself stalled")
    from confluent_kafka.admin import AdminClient

    assert missing not in AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10).topics


def test_broker_reports_its_memory_and_warns_past_the_bound(own_broker):
    broker, supervisor, _topics, reports = own_broker
    rss = supervisor.check_memory()
    assert rss is not None and rss > 1_000_000
    assert REGISTRY.get_sample_value("lfr_embedded_broker_rss_bytes") == rss
    supervisor.memory_warn_bytes = rss // 2
    supervisor.check_memory()
    assert any("WARNING memory" in line and "keeps every record" in line for line in reports)


def test_lfr_broker_command_applies_topics_reports_memory_and_stops_on_sigterm(tmp_path):
    import subprocess
    import sys

    from confluent_kafka.admin import AdminClient

    from services.common.broker import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "broker", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def applied() -> bool:
        try:
            return "lfr.watchlist.v1" in AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=2).topics
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    try:
        wait_until(applied, 30, "topics applied by lfr broker", interval_s=0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "memory storage" in out and "lfr broker: memory" in err
