"""`lfr run dispatch` as a real process against the embedded broker: alerts, dead letters,
restart without duplicates, webhook with retries. Event time comes from the frames, so
cooldowns are crossed by timestamps, never by waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import standardwebhooks
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from services.common.broker import free_port
from services.common.envelope import encode
from services.common.jsonevents import CONTENT_TYPE, decode_record
from services.pipeline.dispatch.policy import alert_id_for
from tests.deployment_helpers import active_deployment
from tests.dispatch.helpers import CHIP, record
from tests.kafka_helpers import NoValidation, audit_record, create_topics, produce, unique, wait_until

PARTITIONS = 4  # as lfr.matches.v1 in topics.toml
CE_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_dataschema")


class DispatchProcess:
    """`python -m services.cli run dispatch`, logs to a file (a full pipe would block it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", "run", "dispatch"], env={**os.environ, **env},
                                     stdout=self._log, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()

    @property
    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def dispatch(broker, kafka_env, deployments, tmp_path):
    """Topics, environment and a starter for dispatcher processes (all stopped at teardown)."""
    hour_ago = int(time.time() * 1000) - 3_600_000
    deployments(active_deployment("van-1", ["cam-1", "cam-2"], start_ms=hour_ago),
                active_deployment("van-ended", ["cam-3"], start_ms=hour_ago, state="ended"))
    topics = {name: unique(f"dispatch-{name}") for name in ("matches", "alerts", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=PARTITIONS)
    env = {**kafka_env, "LFR_INPUT_TOPIC": topics["matches"], "LFR_OUTPUT_TOPIC": topics["alerts"],
           "LFR_DLQ_TOPIC": topics["dlq"], "LFR_GROUP_ID": unique("dispatch"), "LFR_AUTO_COMMIT_INTERVAL_MS": "500"}
    started: list[DispatchProcess] = []

    def start(**extra: str) -> DispatchProcess:
        started.append(DispatchProcess({**env, **extra}, tmp_path / f"dispatch-{len(started)}.log"))
        return started[-1]

    yield topics, env, start
    for process in started:
        if process.proc.poll() is None:
            process.stop()


def send(broker, topic: str, *matches: dict) -> None:
    produce(broker.bootstrap_servers, topic, [record(**m) for m in matches], keys=[m.get("subject", "subj-1").encode() for m in matches])


def headers_of(rec) -> dict[str, bytes]:
    return dict(rec.headers() or [])


def alert_of(rec) -> dict:
    envelope = decode_record(rec.value(), rec.headers())
    assert envelope.schema == "lfr.alerts.v3"
    assert json.loads(rec.value().decode("utf-8")) == envelope.data  # plain JSON: any consumer reads it
    return envelope.data


def test_one_alert_per_window_updates_dead_letters_and_cloudevents(broker, dispatch, reader):
    topics, env, start = dispatch
    alerts, dlq = reader(topics["alerts"]), reader(topics["dlq"])
    base = int(time.time() * 1000) - 120_000
    poison, foreign = b"\x00not an envelope", audit_record(1)
    # A match that breaks its schema still carries a face chip: dead-lettered without its value.
    broken = encode("lfr.matches.v1", {"subject_id": "alice", "face": {"chip": {"data": CHIP}}}, registry=NoValidation())
    dispatcher = start()
    send(broker, topics["matches"],
         dict(subject="alice", seq=1, captured_at_ms=base, score=0.6),
         dict(subject="alice", seq=2, captured_at_ms=base + 1000, score=0.55),   # same window, not better
         dict(subject="alice", camera="cam-3", deployment="van-ended", seq=1, captured_at_ms=base, score=0.9),  # ended: no alert
         dict(subject="alice", camera="cam-4", deployment="van-unknown", seq=1, captured_at_ms=base, score=0.9))  # unknown: none
    produce(broker.bootstrap_servers, topics["matches"], [poison, foreign, broken], keys=[b"alice", b"alice", b"alice"])
    send(broker, topics["matches"],
         dict(subject="alice", seq=3, captured_at_ms=base + 2000, score=0.8),    # better: update
         dict(subject="alice", camera="cam-2", seq=1, captured_at_ms=base + 2000, score=0.6),
         dict(subject="bob", seq=4, captured_at_ms=base + 3000, score=0.7, priority="amber"),
         dict(subject="alice", seq=9, captured_at_ms=base + 2000 + 60_001, score=0.51))  # beyond cooldown: new
    records = alerts.read_until(5, timeout_s=60)
    dlq.read_until(3, timeout_s=30)
    # All of Alice's alerts share her partition and her last record opens a new window: once
    # its alert is read, every alert decided before it has been read too. Bob has one record.
    assert len(records) == 5

    by_ce = {headers_of(r)["ce_id"].decode(): r for r in records}
    w1 = alert_id_for("alice", "van-1", base)
    expected = {
        f"{w1}.0": ("alice", "cam-1", 0, 1, 0.6, "org.openlfr.alert.raised"),
        f"{w1}.1": ("alice", "cam-1", 1, 3, 0.8, "org.openlfr.alert.updated"),
        f"{w1}.2": ("alice", "cam-2", 2, 4, 0.6, "org.openlfr.alert.updated"),  # another camera updates, never raises
        f"{alert_id_for('bob', 'van-1', base + 3000)}.0": ("bob", "cam-1", 0, 1, 0.7, "org.openlfr.alert.raised"),
        f"{alert_id_for('alice', 'van-1', base + 62_001)}.0": ("alice", "cam-1", 0, 1, 0.51, "org.openlfr.alert.raised"),
    }
    assert set(by_ce) == set(expected)  # deterministic ids: derived from subject, deployment, window start, revision
    for ce_id, (subject, camera, revision, sightings, score, ce_type) in expected.items():
        rec = by_ce[ce_id]
        headers, data = headers_of(rec), alert_of(rec)
        assert rec.key() == subject.encode()
        assert all(name in headers for name in CE_HEADERS) and headers["ce_specversion"] == b"1.0"
        assert headers["content-type"] == CONTENT_TYPE.encode() and headers["ce_type"].decode() == ce_type
        assert headers["ce_source"].decode() == f"/openlfr/deployments/van-1/cameras/{camera}"
        assert headers["ce_subject"].decode() == data["alert_id"] == ce_id.rsplit(".", 1)[0]
        assert (data["subject_id"], data["camera_id"], data["revision"], data["sightings"], data["score"]) == (subject, camera, revision, sightings, score)
        assert data["reference"] == f"W-{subject}" and data["category"] == "wanted_by_courts" and data["threshold"] == 0.5
        assert data["deployment_id"] == "van-1" and "chip" not in data["face"]
        assert data["capture_to_alert_ms"] >= 50_000
    update = alert_of(by_ce[f"{w1}.1"])
    assert (update["first_seen_ms"], update["last_seen_ms"], update["face"]["frame"]["seq"]) == (base, base + 2000, 3)
    assert alert_of(by_ce[f"{alert_id_for('bob', 'van-1', base + 3000)}.0"])["priority"] == "amber"

    dead = {headers_of(r)["lfr_dlq_reason"].decode(): r for r in dlq.poll()}
    assert set(dead) == {"decode_error", "unknown_schema", "schema_invalid"}
    assert dead["decode_error"].value() == poison and dead["unknown_schema"].value() == foreign
    assert headers_of(dead["decode_error"])["lfr_dlq_payload"] == headers_of(dead["unknown_schema"])["lfr_dlq_payload"] == b"original"
    assert dead["schema_invalid"].value() is None and headers_of(dead["schema_invalid"])["lfr_dlq_payload"] == b"withheld"
    for rec in dead.values():
        headers = headers_of(rec)
        assert rec.key() == b"alice"
        assert headers["lfr_dlq_topic"].decode() == topics["matches"] and headers["lfr_dlq_service"] == b"dispatch"
        assert headers["lfr_dlq_partition"].isdigit() and headers["lfr_dlq_offset"].isdigit() and headers["lfr_dlq_at_ms"].isdigit()
        assert headers["lfr_dlq_error_class"] and headers["lfr_dlq_error"]

    # The changelog is co-partitioned with the matches topic.
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10).topics
    assert len(metadata[f"{env['LFR_GROUP_ID']}-open-alerts-changelog"].partitions) == PARTITIONS

    assert dispatcher.stop() == 0, dispatcher.log[-3000:]
    log = dispatcher.log
    assert "fake-jpeg" not in log and "Traceback" not in log
    assert all(json.loads(line)["service"] == "dispatch" for line in log.splitlines() if line.startswith("{"))


def test_restart_restores_state_and_raises_no_duplicate(broker, dispatch, reader):
    topics, _env, start = dispatch
    alerts = reader(topics["alerts"])
    base = int(time.time() * 1000) - 120_000
    first = start()
    send(broker, topics["matches"],
         dict(subject="carol", seq=1, captured_at_ms=base, score=0.7),
         dict(subject="carol", seq=2, captured_at_ms=base + 1000, score=0.8))  # update: rev 1, best 0.8
    alerts.read_until(2, timeout_s=60)
    assert first.stop() == 0, first.log[-3000:]

    second = start()  # same group: restores the table from the changelog before consuming
    send(broker, topics["matches"],
         dict(subject="carol", seq=3, captured_at_ms=base + 5000, score=0.75),            # within cooldown, not better
         dict(subject="carol", seq=4, captured_at_ms=base + 5000 + 60_001, score=0.6))    # beyond cooldown
    records = alerts.read_until(3, timeout_s=60)  # the last one is carol's last record: nothing can follow
    w1, w2 = alert_id_for("carol", "van-1", base), alert_id_for("carol", "van-1", base + 65_001)
    assert [headers_of(r)["ce_id"].decode() for r in records] == [f"{w1}.0", f"{w1}.1", f"{w2}.0"]
    assert alert_of(records[2])["sightings"] == 1
    assert second.stop() == 0, second.log[-3000:]


class _Webhook(BaseHTTPRequestHandler):
    """Fails twice then accepts for subject "flaky"; always fails for subject "down"."""

    requests: list[tuple[dict, dict]] = []
    raw: list[tuple[dict, bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        with self.lock:
            self.requests.append((dict(self.headers), body))
            self.raw.append((dict(self.headers), raw))
            attempts = sum(1 for _, b in self.requests if b["data"]["subject_id"] == body["data"]["subject_id"])
        ok = body["data"]["subject_id"] == "flaky" and attempts > 2
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def _metric(port: int, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_webhook_retries_with_backoff_then_dead_letters(broker, dispatch, reader):
    topics, _env, start = dispatch
    _Webhook.requests = []
    _Webhook.raw = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alerts, dlq = reader(topics["alerts"]), reader(topics["dlq"])
    metrics_port = free_port()
    token = "s3cret-webhook-token"
    secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    try:
        dispatcher = start(LFR_WEBHOOK_URL=f"http://127.0.0.1:{server.server_port}/alerts", LFR_WEBHOOK_TOKEN=token,
                           LFR_WEBHOOK_SIGNING_SECRET=secret,
                           LFR_WEBHOOK_MAX_RETRIES="2", LFR_WEBHOOK_BACKOFF_INITIAL_S="0.05",
                           LFR_METRICS_PORT=str(metrics_port))
        send(broker, topics["matches"], dict(subject="flaky", seq=1), dict(subject="down", seq=2))
        alerts.read_until(2, timeout_s=60)
        dead = dlq.read_until(1, timeout_s=30)
        wait_until(lambda: _metric(metrics_port, "lfr_webhook_deliveries_total", outcome="delivered") == 1, 10, "delivery counted")
    finally:
        server.shutdown()
        server.server_close()

    by_subject = {r.key().decode(): r for r in alerts.poll()}
    attempts = {s: [(h, b) for h, b in _Webhook.requests if b["data"]["subject_id"] == s] for s in ("flaky", "down")}
    assert len(attempts["flaky"]) == 3 and len(attempts["down"]) == 3  # 1 try + 2 retries each
    headers, body = attempts["flaky"][-1]
    assert headers["Authorization"] == f"Bearer {token}"
    # Every attempt is signed the Standard Webhooks way, with the CloudEvent id as webhook-id;
    # the reference receiver check accepts it.
    raw_attempts = [(h, raw) for h, raw in _Webhook.raw if json.loads(raw)["data"]["subject_id"] == "flaky"]
    assert len(raw_attempts) == 3
    for attempt_headers, raw in raw_attempts:
        assert attempt_headers["webhook-id"] == body["id"]
        assert standardwebhooks.Webhook(secret).verify(raw, attempt_headers)["id"] == body["id"]
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    kafka_headers = headers_of(by_subject["flaky"])
    assert body["id"] == kafka_headers["ce_id"].decode() and body["source"] == kafka_headers["ce_source"].decode()
    assert body["specversion"] == "1.0" and body["type"] == "org.openlfr.alert.raised"
    assert "chip" not in body["data"]["face"]
    # Parity: the webhook's structured event and the Kafka binary event of the same alert carry
    # the same attributes and the same data.
    assert body["data"] == json.loads(by_subject["flaky"].value())
    assert {name[3:]: value.decode() for name, value in kafka_headers.items() if name.startswith("ce_")} == {
        name: value for name, value in body.items() if name not in ("data", "datacontenttype")}
    assert body["datacontenttype"] == kafka_headers["content-type"].decode() == "application/json"

    # After the last retry the alert's coordinates go to the dead-letter topic; its value (with
    # the face chip) stays in the alerts topic only.
    assert len(dead) == 1
    letter = dead[0]
    letter_headers = headers_of(letter)
    assert letter.value() is None and letter.key() == b"down" and letter_headers["lfr_dlq_payload"] == b"withheld"
    assert int(letter_headers["lfr_dlq_offset"]) == by_subject["down"].offset()
    assert letter_headers["ce_id"] == headers_of(by_subject["down"])["ce_id"]
    assert letter_headers["lfr_dlq_topic"].decode() == topics["alerts"]
    assert letter_headers["lfr_dlq_error_class"] == b"WebhookDeliveryError" and letter_headers["lfr_dlq_reason"] == b"stage_error"
    assert b"503" in letter_headers["lfr_dlq_error"]

    # Counters move right after the broker's acknowledgement, so poll until they settle.
    expected = {
        ("lfr_webhook_deliveries_total", (("outcome", "retried"),)): 4,
        ("lfr_webhook_deliveries_total", (("outcome", "failed"),)): 1,
        ("lfr_alerts_total", (("kind", "new"), ("priority", "red"))): 2,
        ("lfr_capture_to_alert_seconds_count", ()): 2,
        ("lfr_messages_dead_lettered_total", (("service", "dispatch"), ("topic", topics["alerts"]), ("reason", "stage_error"))): 1,
        ("lfr_messages_produced_total", (("service", "dispatch"), ("topic", topics["alerts"]))): 2,
    }
    seen: dict = {}

    def settled() -> bool:
        seen.update({key: _metric(metrics_port, key[0], **dict(key[1])) for key in expected})
        return seen == expected

    try:
        wait_until(settled, 10, "the dispatcher's metrics")
    except AssertionError:
        raise AssertionError(f"metrics {seen} != {expected}") from None
    assert dispatcher.stop() == 0, dispatcher.log[-3000:]
    assert token not in dispatcher.log


def test_bad_setting_exits_2_naming_the_variable(kafka_env):
    result = subprocess.run([sys.executable, "-m", "services.cli", "run", "dispatch"],
                            env={**os.environ, **kafka_env, "LFR_COOLDOWN_S": "0"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "LFR_COOLDOWN_S" in result.stderr and "Traceback" not in result.stderr
