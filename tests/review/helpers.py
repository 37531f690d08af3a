"""A review console running in-process on the test broker, with its own topics and short settings."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from services.common.broker import free_port
from services.common.settings import ReviewSettings, load_settings
from services.operations.review.app import build_app
from services.operations.review.service import build_console
from tests.kafka_helpers import create_topics, unique

TOPIC_FIELDS = ("alerts_topic", "evidence_topic", "evidence_keys_topic", "adjudications_topic", "audit_topic",
                "watchlist_topic", "counts_topic", "deployments_topic", "heartbeats_topic")


def review_settings(bootstrap: str, state_dir: Path, **overrides) -> ReviewSettings:
    topics = {field: unique(field.removesuffix("_topic")) for field in TOPIC_FIELDS}
    create_topics(bootstrap, *topics.values(), partitions=1)
    port = free_port()
    values = dict(kafka_bootstrap_servers=bootstrap, state_dir=state_dir, users_file=state_dir / "users.json",
                  http_host="127.0.0.1", http_port=port, public_url=f"http://127.0.0.1:{port}", metrics_port=0,
                  transit_key_validity_s=3, transit_key_grace_s=3, sweep_interval_s=0.2, report_read_timeout_s=20, **topics)
    values.update(overrides)
    return load_settings(ReviewSettings, **values)


@contextmanager
def running_console(settings: ReviewSettings, clock=None):
    console, reader = build_console(settings, **({"clock": clock} if clock else {}))
    reader.start()
    console.sweeper.start()
    server = uvicorn.Server(uvicorn.Config(build_app(console), host=settings.http_host, port=settings.http_port,
                                           log_config=None, access_log=False, proxy_headers=False))  # as services/operations/review/service.py
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and console.sweeper.keys.all() and reader.ready.is_set()):
        assert time.monotonic() < deadline, "console did not start"
        time.sleep(0.05)
    try:
        yield console
    finally:
        server.should_exit = True
        thread.join(10)
        reader.stop_event.set()
        console.sweeper.stop_event.set()
        reader.join(10)
        console.sweeper.join(10)


def placeholder_jpeg(seed: int, size: int = 112) -> bytes:
    """A generated placeholder image (never a face from a data set): gradient and a number."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=3)
    ramp = np.linspace(0.6, 1.2, size)[None, :, None]
    image = np.clip(np.ones((size, size, 3)) * base * ramp, 0, 255).astype(np.uint8)
    cv2.circle(image, (size // 2, size // 2 - 6), size // 4, (230, 230, 230), 2)
    cv2.putText(image, str(seed), (size // 2 - 18, size - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    ok, buffer = cv2.imencode(".jpg", image)
    return buffer.tobytes()


def emit_alert(bootstrap: str, settings: ReviewSettings, *, subject: str, deployment: str = "van-1", camera: str = "cam-1",
               captured_at_ms: int | None = None, chip: bytes | None = None, seal: bool = True, priority: str = "red",
               force: str | None = None) -> dict:
    """What the dispatcher does for one new alert: the alert (no chip) and its sealed chip
    (``force``: the force the dispatcher stamps on both; None = default's, unnamed)."""
    from services.pipeline.dispatch.evidence import EvidenceSealer
    from services.pipeline.dispatch.policy import decide
    from tests.dispatch.helpers import match
    from tests.kafka_helpers import produce, produce_events

    captured = captured_at_ms or int(time.time() * 1000)
    _, alert = decide(None, match(subject=subject, camera=camera, deployment=deployment, captured_at_ms=captured,
                                  chip=chip or placeholder_jpeg(len(subject)), priority=priority), 60_000, captured + 300)
    if force:
        alert.data["force"] = force
    if seal:
        sealer = EvidenceSealer({"bootstrap.servers": bootstrap}, settings.evidence_keys_topic)
        sealer.start()
        try:
            deadline = time.monotonic() + 20
            while sealer.keyring.current() is None:
                assert time.monotonic() < deadline, "no transit key published"
                time.sleep(0.05)
            produce(bootstrap, settings.evidence_topic, [sealer.seal(alert)], keys=[alert.alert_id.encode()])
        finally:
            sealer.stop()
    produce_events(bootstrap, settings.alerts_topic, "lfr.alerts.v3", [alert.data], keys=[subject.encode()])
    return alert.data


def enrol_reference(bootstrap: str, settings: ReviewSettings, subject: str, deployment: str = "van-1", seed: int = 1) -> None:
    """A watchlist entry with a generated reference image (no model needed: a random unit vector)."""
    import numpy as np

    from services.common.settings import WatchlistSettings
    from services.engine.face.models import SFACE, ModelIdentity
    from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry
    from services.governance.watchlist.reference import ReferenceImage
    from services.governance.watchlist.store import WatchlistStore

    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    entry = WatchlistEntry(subject, "W-" + subject, "wanted_by_courts", "red", Provenance("custody", 1, "PACE", "PC1", 1),
                           int(time.time() * 1000) + 86_400_000, (deployment,),
                           (EnrolledEmbedding(ModelIdentity(SFACE.name, SFACE.sha256), vector / np.linalg.norm(vector)),),
                           ReferenceImage(placeholder_jpeg(seed + 100, 140), 140, 140))
    # Through the store, signed and audited: the console shows only verified reference images.
    WatchlistStore(load_settings(WatchlistSettings, kafka_bootstrap_servers=bootstrap, watchlist_topic=settings.watchlist_topic,
                                 audit_topic=settings.audit_topic)).publish(entry)


class AlertFeed:
    """What a busy dispatcher writes to the console's alerts topic, one record every ``interval_s``
    on a thread: mostly revisions of open alerts (a better score, one more sighting), and every
    ``new_every``-th record a new alert for a new subject. The console reads them from the topic
    and pushes them to the page, the path every alert takes."""

    def __init__(self, bootstrap: str, settings: ReviewSettings, prefix: str, *, interval_s: float = 0.1, new_every: int = 3,
                 deployment: str = "van-1") -> None:
        from confluent_kafka import Producer

        self.topic, self.prefix, self.deployment = settings.alerts_topic, prefix, deployment
        self.interval_s, self.new_every = interval_s, new_every
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})
        self.states: dict[str, object] = {}  # subject -> the dispatcher's open alert
        self.priorities: dict[str, str] = {}
        self.sent = self.updates = self.new = 0
        self.error: BaseException | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-feed", daemon=True)

    def open_alerts(self, count: int) -> None:
        """``count`` new alerts at once (the queue the officer finds on signing in); no thread."""
        for _ in range(count):
            self._emit_new()
        assert self.producer.flush(30) == 0
        self.producer = None  # the client goes now, not when the broker has gone

    def start(self) -> None:
        self._thread.start()

    def latest(self) -> dict[str, int]:
        """alert id -> the last revision written, for each alert of this feed."""
        return {state.alert_id: state.revision for state in self.states.values()}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.producer.flush(30) == 0
        self.producer = None
        if self.error is not None:
            raise AssertionError("the alert feed failed") from self.error

    def _run(self) -> None:
        import random

        rng = random.Random(22)
        try:
            while not self._stop.wait(self.interval_s):
                if not self.states or self.sent % self.new_every == self.new_every - 1:
                    self._emit_new()
                else:
                    self._emit_update(rng.choice(sorted(self.states)))
                self.producer.flush(5)
        except BaseException as error:  # reported by stop(), in the test's thread
            self.error = error

    def _emit_new(self) -> None:
        subject = f"{self.prefix}-{self.new:03d}"
        self.priorities[subject] = ("red", "amber", "green")[self.new % 3]
        self._emit(subject, None, 0.55, self.priorities[subject])
        self.new += 1

    def _emit_update(self, subject: str) -> None:
        state = self.states[subject]
        self._emit(subject, state, min(0.99, state.best_score + 0.0005), self.priorities[subject])
        self.updates += 1

    def _emit(self, subject: str, state, score: float, priority: str) -> None:
        from services.common import jsonevents
        from services.pipeline.dispatch.policy import decide
        from tests.dispatch.helpers import match

        self._seq += 1
        now = int(time.time() * 1000)
        new_state, alert = decide(state, match(subject=subject, deployment=self.deployment, seq=self._seq, captured_at_ms=now,
                                               score=score, priority=priority), 60_000, now + 5)
        assert alert is not None, "the dispatcher raised nothing for this match"
        self.states[subject] = new_state
        value, headers = jsonevents.encode("lfr.alerts.v3", alert.data)  # as the dispatcher writes it
        self.producer.produce(self.topic, value=value, key=subject.encode(), headers=headers)
        self.sent += 1
