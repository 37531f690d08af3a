"""Working offline (issue #26 point 4): a van with no link at all runs a short deployment from its
bundle, captures only inside the window, alerts its own officers on its own broker, records their
decisions, erases the bundle at the end, and delivers everything once the link comes back.

Cheap on purpose: the models do not run. Real parts: the bundle (built and sealed by the core,
verified, held as ciphertext and crypto-erased by the van's store), the capture policy the
ingest applies (services/governance/deployments/policy.py) on the deployment record the bundle carries,
the van's embedded broker, the link (services/van/link: durable outbox, a core that does not
exist until the end) and the core's embedded broker on the port the link was always given.
Synthetic: the alerts (as the dispatcher's policy raises them) and the officers' decisions (as
the review console writes them) are produced straight onto the van's topics; time is passed
in, not waited for (the window is evaluated at instants before, inside and after it)."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import pytest

from services.common import jsonevents
from services.common.settings import load_settings
from services.common.signing import Keyring, Signer
from services.governance.deployments.policy import CAMERA_NOT_AUTHORISED, OUTSIDE_WINDOW, DeploymentPolicy
from services.van.fleet.bundle import BundleContents, BundleRefused, build_bundle, force_owner
from services.van.fleet.vankey import VanKey
from services.van.fleet.vanstore import VanBundleStore
from services.van.link.outbox import Outbox
from services.van.link.service import build
from services.van.link.settings import LinkSettings
from services.governance.watchlist.thresholds import Thresholds
from tests.deployment_helpers import active_deployment
from tests.fleet.test_bundle import entry
from tests.kafka_helpers import TopicReader, wait_until
from tests.link.test_forwarding import CoreSink, assert_no_biometric_record, every_core_record, start_broker, topic_named

ALERTS = 3


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alert(seq: int, at_ms: int) -> tuple[bytes, bytes, list]:
    """An alert of deployment dep-off on camera off-mast-1, from the dispatcher's own decide()."""
    from benchmarks.fleet import alert_record

    return alert_record("off", seq, at_ms)


def _decision(alert: dict, at_ms: int) -> tuple[bytes, list]:
    return jsonevents.encode("lfr.adjudications.v3", {
        "alert_id": alert["alert_id"], "subject_id": alert["subject_id"], "deployment_id": alert["deployment_id"],
        "camera_id": alert["camera_id"], "stage": "decision", "decision": "rejected", "actor": "PC 7 van officer", "role": "operator",
        "alert_at_ms": alert["first_seen_ms"], "decided_at_ms": at_ms + 5000, "alert_to_decision_ms": 5000})


@pytest.mark.slow
def test_a_van_with_no_link_runs_a_deployment_erases_it_and_delivers_everything_later(tmp_path, monkeypatch):
    now = int(time.time() * 1000)
    # -- the core, before the van leaves the depot: a bundle sealed to the van ---------------
    force, van_key = Signer.generate(force_owner("default")), VanKey.generate("van-off")
    trust = Keyring()
    trust.add(force, now - 1000)
    listed = entry("subject-a", 1)
    deployment = dataclasses.replace(active_deployment("dep-off", ["off-mast-1"], entries=[listed], start_ms=now - 1000, hours=0.01),
                                     force="default", vans=("van-off",))
    raw = build_bundle(BundleContents(deployment, (listed,), Thresholds(), tuple(trust.keys())), van_key.public(), "default", force,
                       grace_ms=1000, now_ms=now)

    # -- the van, with no link at all: the core it is told to reach does not exist ----------
    van = start_broker(tmp_path)
    core_port = _unused_port()
    for name, value in {"LFR_KAFKA_BOOTSTRAP_SERVERS": van.bootstrap_servers, "LFR_LINK_CORE_BOOTSTRAP_SERVERS": f"127.0.0.1:{core_port}",
                        "LFR_LINK_CORE_TOPIC": "", "LFR_VAN_ID": "van-off", "LFR_LINK_OUTBOX_PATH": str(tmp_path / "outbox.sqlite"),
                        "LFR_METRICS_PORT": "0", "LFR_SESSION_TIMEOUT_MS": "6000", "LFR_HEARTBEAT_INTERVAL_MS": "1000"}.items():
        monkeypatch.setenv(name, value)
    forwarder = build(load_settings(LinkSettings))
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [forwarder.step() for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    core = sink = None
    try:
        store = VanBundleStore(tmp_path / "van", van_key, "default", trust, Outbox(tmp_path / "outbox.sqlite"))
        header = store.take_in(raw, now)
        carried = store.unlock(header.bundle_id, now).deployment  # what the van's ingest and matcher enforce
        window = carried.window

        # captures only inside the window, only its cameras (the ingest's check, strict: no skew)
        def refusal(camera: str, at_ms: int) -> str | None:
            return DeploymentPolicy({carried.deployment_id: carried}, clock=lambda: at_ms).capture_refusal(camera, carried.deployment_id)

        assert refusal("off-mast-1", window.start_ms - 1) == OUTSIDE_WINDOW
        assert refusal("off-mast-1", window.start_ms + 1) is None
        assert refusal("cam-9", window.start_ms + 1) == CAMERA_NOT_AUTHORISED
        assert refusal("off-mast-1", window.end_ms + 1) == OUTSIDE_WINDOW

        # alerts for the van's own officers, on the van's broker, and their decisions
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": van.bootstrap_servers, "enable.idempotence": True})
        alerts = []  # all inside the window (the dispatcher admits only records captured inside it)
        for seq in range(ALERTS):
            key, value, headers = _alert(seq, window.start_ms + 1000 * seq)
            producer.produce(topic_named("alerts"), key=key, value=value, headers=headers)
            alerts.append(jsonevents.decode_record(value, headers).data)
        for alert in alerts:
            value, headers = _decision(alert, window.start_ms)
            producer.produce(topic_named("adjudications"), key=alert["subject_id"].encode(), value=value, headers=headers)
        assert producer.flush(30) == 0
        officers = TopicReader(van.bootstrap_servers, topic_named("alerts"))  # what the van's review console reads
        try:
            assert len(officers.read_until(ALERTS)) == ALERTS
        finally:
            officers.close()

        # the window ends and its grace passes, still with no link: the bundle is crypto-erased
        (erasure,) = store.erase_due(header.erase_at_ms)
        assert erasure.deployment_id == "dep-off"
        with pytest.raises(BundleRefused):
            store.unlock(header.bundle_id, header.erase_at_ms)
        assert not list((tmp_path / "van" / "bundles").iterdir())  # nothing of the bundle left on disk
        box = Outbox(tmp_path / "outbox.sqlite")
        wait_until(lambda: box.backlog().rows >= 2 * ALERTS + 1, 60, "alerts, decisions and the erasure queued in the van")
        assert forwarder.outbox.last_ack_ms() is None  # nothing ever reached a core

        # the link comes back (hours later in a van; here, now): everything is delivered, once
        core = start_broker(tmp_path, port=core_port)
        sink = CoreSink(core.bootstrap_servers)
        wait_until(lambda: sink.poll() >= 2 * ALERTS + 1, 120, "everything at the core after the link came back")
        wait_until(lambda: box.backlog().rows == 0, 30, "the van's backlog drained")
        box.close()
        found_at_core = every_core_record(core.bootstrap_servers)
    finally:
        stop.set()
        thread.join(30)
        forwarder.close(1)
        if sink is not None:
            sink.close()
        for broker in (core, van):
            if broker is not None:
                broker.stop()
    by_topic: dict[str, int] = {}
    for record in sink.unique:
        by_topic[record.topic()] = by_topic.get(record.topic(), 0) + 1
    assert by_topic == {topic_named("alerts"): ALERTS, topic_named("adjudications"): ALERTS, topic_named("audit"): 1}, by_topic
    assert sink.duplicates == 0
    (erased,) = [jsonevents.decode_record(r.value(), r.headers()).data for r in sink.unique if r.topic() == topic_named("audit")]
    assert erased["action"] == "bundle.erased" and erased["deployment_id"] == "dep-off"
    assert_no_biometric_record(found_at_core)
