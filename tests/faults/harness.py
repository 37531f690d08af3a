"""The real pipeline under fault injection, scored against the synthetic crowd's ground truth.

One :class:`CrowdRun` is the demo's pipeline (services/tools/demo): the embedded broker under `lfr
broker`'s supervisor (it restarts a broker that dies and re-applies the topics), a watchlist
enrolled from the data set, an active deployment, and ingest (the synthetic crowd camera),
detect, embed, the matcher and the dispatcher as separate processes with the real models. A
process supervisor restarts any service that exits, as Kubernetes would, and counts the exits
nobody asked for (``crash_restarts``). Scenarios share the run one after another.

Ground truth: ingest writes, per frame, who is where (services/pipeline/ingest/crowd.py). A *walk* is
one pass of one walker across the scene; the crowd repeats its cast, so one person walks many
times. The dispatcher's cooldown is set below the shortest gap between two walks of one person,
so every walk of a watchlisted person opens an alert of its own. A walk is *alerted* when an
alert event (any revision) names its person and carries evidence from one of its frames.

Per scenario (a fault at ``fault_at``):
- ``recovery_s``: from the fault to the arrival of the first alert whose evidence was captured
  after the fault (the pipeline works end to end again), or None;
- ``lost_alerts``: walks of watchlisted people still in view at least VIEW_AFTER_S after
  recovery (whenever they entered) that finished before the scenario's window closed, without an
  alert;
  ``lost_unmatched``: those of them the matcher never matched either (lfr.matches.v1), and
  ``lost_never_embedded``: those of which no face was ever embedded (lfr.embeddings.v1: the
  walk was dropped or lost upstream, not scored below the threshold);
- ``duplicate_alerts``: alert events in the scenario's window whose ce_id was seen before;
- ``dead_lettered`` / ``missing_dead_letters``: poison records dead-lettered, with a reason, by
  every service that reads their topic, and the ones that were not;
- ``crash_restarts``: exits nobody asked for during the scenario.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from services.common.broker_supervisor import BrokerSupervisor
from services.common.jsonevents import decode_record
from services.common.errors import MessageError
from services.common.settings import DispatchSettings
from services.common.topics import load_topic_specs
from services.tools.demo.cast import Cast, choose_cast
from services.tools.demo.deployment import open_deployment
from services.tools.demo.pipeline import Pipeline
from services.tools.demo.run import CAMERA, DEPLOYMENT, DemoOptions, crowd_camera, enrol
from services.engine.face.boxes import box_iou
from services.pipeline.ingest.cameras import save_cameras
from tests.kafka_helpers import unique, wait_until

logger = logging.getLogger(__name__)

ALERTS_TOPIC = DispatchSettings.model_fields["output_topic"].default
DLQ_TOPIC = "lfr.dlq.v1"
MATCHES_TOPIC = "lfr.matches.v1"
EMBEDDINGS_TOPIC = "lfr.embeddings.v1"
SERVICES = ("ingest", "detect", "embed", "matcher", "dispatch")
STAGES = SERVICES[1:]
# Who reads each topic, so who must dead-letter a poison record on it.
READERS = {
    "lfr.frames.v1": ("detect",),
    "lfr.faces.v1": ("embed",),
    "lfr.embeddings.v1": ("matcher",),
    "lfr.matches.v1": ("dispatch",),
    "lfr.watchlist.v1": ("matcher",),
    "lfr.deployments.v1": SERVICES,
}
RECOVERY_BOUND_S = 30.0  # a killed service (or the broker) is back, in its group and alerting again
VIEW_AFTER_S = 2.0  # a walk must stay this long in view after recovery to be owed an alert
SETTLE_S = 6.0  # a walk that ended this long before the window closed has had time to alert
COOLDOWN_S = 1.0  # below the shortest gap between two walks of one person (see CROWD)
# The crowd: 3 watchlisted people and 3 strangers, one walker every 1.5 s, each walk 4-7 s,
# so one person walks again every 9 s (at least 2 s after the previous walk ended). Every face
# is wide enough to be recognised (the demo's lower bound is 64 px).
WATCHLISTED, STRANGERS, FPS, SEED = 3, 3, 3.0, 11
CROWD = {"min_face_width": 110, "max_face_width": 160}
# Walking photos that score this far above the threshold at full size (the e2e test uses 0.08;
# rendered at walking size a face scores lower, and a walk must be reliably recognised for a
# missing alert to mean a lost one).
RECOGNISABLE_MARGIN = 0.15


@dataclass
class Walk:
    identity: str
    face_width: int
    first_ms: int
    last_ms: int
    frames: set[tuple[int, int]] = field(default_factory=set)  # (seq, captured_at_ms)
    boxes: dict[tuple[int, int], list[float]] = field(default_factory=dict)  # (seq, captured_at_ms) -> face box


@dataclass
class Injected:
    """One poison record: where it landed and what it was."""

    topic: str
    partition: int
    offset: int
    kind: str


class CrowdRun:
    def __init__(self, workdir: Path, data_dir: Path, face_engine) -> None:
        self.workdir = workdir
        self.data_dir = data_dir
        self.face_engine = face_engine
        self.pipeline = Pipeline(workdir, extra_env={
            "LFR_COOLDOWN_S": str(COOLDOWN_S),
            "LFR_SHUTDOWN_TIMEOUT_S": "15",
            "LFR_AUTO_COMMIT_INTERVAL_MS": "200",
        })
        self.broker_supervisor = BrokerSupervisor(
            self.pipeline.broker, load_topic_specs(), memory_warn_bytes=2**40, check_interval_s=0.2, report=lambda _line: None
        )
        self.cast: Cast | None = None
        self.deployment = None
        self.expected_exits: dict[str, int] = {}  # service -> signal sent
        self.exit_codes: list[tuple[str, int | None, int]] = []  # (service, signal sent, exit code)
        self.crash_restarts = 0
        self.alerts: list[tuple[float, str, dict]] = []  # (arrived at, wall clock s; ce_id; alert)
        self.dead: list[dict[str, str]] = []
        self.matched: set[tuple[str, int, int]] = set()  # (subject, frame seq, captured at) the matcher matched
        # (frame seq, captured at) -> boxes of the faces embed embedded there (no vector is kept)
        self.embedded: dict[tuple[int, int], list[list[float]]] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        detector, embedder = self.face_engine
        self.cast = choose_cast(self.data_dir, detector, embedder, watchlisted=WATCHLISTED, strangers=STRANGERS, seed=SEED,
                                deployment=DEPLOYMENT, recognisable_margin=RECOGNISABLE_MARGIN)
        assert len(self.cast.watchlist) == WATCHLISTED and len(self.cast.strangers) == STRANGERS, self.cast
        self.broker_supervisor.start()
        self._threads.append(threading.Thread(target=self.broker_supervisor.run, daemon=True, name="broker-supervisor"))
        self.enrol_and_open()
        for service in STAGES:
            self.pipeline.start(service)
        self.pipeline.wait_ready(STAGES, timeout_s=120)
        camera = crowd_camera(self.cast, self.data_dir, DemoOptions(fps=FPS, seed=SEED))
        camera = replace(camera, synthetic={**camera.synthetic, **CROWD})
        save_cameras(self.pipeline.cameras_file, {CAMERA: camera})
        self.pipeline.start("ingest")
        self.pipeline.wait_ready(("ingest",))
        self._threads += [threading.Thread(target=self._supervise, daemon=True, name="supervise"),
                          threading.Thread(target=self._observe, daemon=True, name="observe")]
        for thread in self._threads:
            thread.start()

    def enrol_and_open(self) -> None:
        """The watchlist and the deployment, as an operator sets them up (again after the embedded
        broker restarts empty: it loses every topic)."""
        enrol(self.pipeline, self.cast, *self.face_engine)
        self.deployment = open_deployment(self.pipeline.bootstrap, DEPLOYMENT, [CAMERA], signing_env=self.pipeline.signing_env,
                                          authoriser=self.pipeline.authoriser)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        with self._lock:  # kept beside the logs and the truth, for a look after a failure
            (self.workdir / "alerts.jsonl").write_text("".join(json.dumps({"arrived": t, "ce_id": ce, **a}) + "\n" for t, ce, a in self.alerts))
        for thread in self._threads[1:]:
            thread.join(15)
        codes = self.pipeline.stop_all()
        self.broker_supervisor.stop()
        self._threads[0].join(15) if self._threads else None
        self.pipeline.broker.stop()
        return codes

    # -- processes ---------------------------------------------------------------------------

    def signal(self, service: str, signum: int) -> None:
        with self._lock:
            self.expected_exits[service] = signum
            self.pipeline.processes[service].send_signal(signum)

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for name, process in list(self.pipeline.processes.items()):
                    code = process.poll()
                    if code is None or self._stop.is_set():
                        continue
                    signum = self.expected_exits.pop(name, None)
                    self.exit_codes.append((name, signum, code))
                    if signum is None:
                        self.crash_restarts += 1
                        logger.warning("service exited unasked; restarting", extra={"service": name, "code": code})
                    self.pipeline.start(name)

    def wait_all_ready(self, timeout_s: float) -> None:
        wait_until(lambda: all(self.pipeline.ready(s) and self.pipeline.processes[s].poll() is None for s in SERVICES),
                   timeout_s, "every service ready")

    # -- observation -------------------------------------------------------------------------

    def _observe(self) -> None:
        consumer = None
        incarnation = self.pipeline.broker.pid  # a restarted broker is a new process with empty topics
        seen: set[tuple[int | None, str, int, int]] = set()
        while not self._stop.is_set():
            try:
                if consumer is not None and self.pipeline.broker.pid != incarnation:
                    # The topics were re-created empty: positions from before would skip records.
                    consumer.close()
                    consumer = None
                if consumer is None:
                    incarnation = self.pipeline.broker.pid
                    consumer = Consumer({"bootstrap.servers": self.pipeline.bootstrap, "group.id": unique("obs"),
                                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
                    metadata = consumer.list_topics(timeout=5).topics
                    consumer.assign([TopicPartition(t, p, 0) for t in (ALERTS_TOPIC, DLQ_TOPIC, MATCHES_TOPIC, EMBEDDINGS_TOPIC)
                                     for p in metadata[t].partitions])
                for message in consumer.consume(200, 0.2):
                    if message.error() is not None:
                        continue
                    position = (incarnation, message.topic(), message.partition(), message.offset())
                    if position in seen:
                        continue  # read again after a reconnect: counted once
                    seen.add(position)
                    self._take(message)
            except Exception as exc:  # noqa: BLE001 - the broker is restarting; reconnect
                logger.info("observer reconnecting", extra={"error": str(exc)[:200]})
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:  # noqa: BLE001
                        pass
                consumer = None
                time.sleep(0.5)
        if consumer is not None:
            consumer.close()

    def _take(self, message) -> None:
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in message.headers() or ()}
        try:
            # alerts are plain JSON CloudEvents, matches and embeddings envelopes: read by content-type
            data = decode_record(message.value(), message.headers()).data if message.topic() != DLQ_TOPIC else None
        except MessageError:
            return  # a poison record on lfr.matches.v1: the services' business, not the observer's
        with self._lock:
            if message.topic() == ALERTS_TOPIC:
                self.alerts.append((time.time(), headers["ce_id"], data))
            elif message.topic() == MATCHES_TOPIC:
                frame = data["face"]["frame"]
                self.matched.add((data["subject_id"], frame["seq"], frame["captured_at_ms"]))
            elif message.topic() == EMBEDDINGS_TOPIC:
                frame = data["face"]["frame"]
                self.embedded.setdefault((frame["seq"], frame["captured_at_ms"]), []).append(list(data["face"]["box"]))
            else:
                self.dead.append(headers)

    def walks(self) -> list[Walk]:
        """Walks from the truth file; ingest restarts its scene (and seq) when it restarts."""
        walks: list[Walk] = []
        current: dict[int, Walk] = {}
        last_seq = -1
        for frame in self.pipeline.truth():
            if frame["seq"] <= last_seq:
                current = {}  # a new ingest process: its walker indexes start again
            last_seq = frame["seq"]
            for face in frame["faces"]:
                walk = current.get(face["walker"])
                if walk is None:
                    walk = current[face["walker"]] = Walk(face["identity"], face["face_width"], frame["captured_at_ms"], frame["captured_at_ms"])
                    walks.append(walk)
                walk.last_ms = frame["captured_at_ms"]
                walk.frames.add((frame["seq"], frame["captured_at_ms"]))
                walk.boxes[(frame["seq"], frame["captured_at_ms"])] = face["box"]
        return walks

    def was_embedded(self, walk: Walk) -> bool:
        """Some face of ``walk`` reached lfr.embeddings.v1 (a box on one of its frames over its own)."""
        with self._lock:
            return any(box_iou(box, walk.boxes[frame]) > 0.2 for frame in walk.frames for box in self.embedded.get(frame, ()))

    def watchlisted(self) -> set[str]:
        return {name for name, _photo in self.cast.watchlist}

    def alerts_since(self, arrived_after: float) -> list[tuple[float, str, dict]]:
        with self._lock:
            return [a for a in self.alerts if a[0] >= arrived_after]

    def first_alert_captured_after(self, fault_at: float) -> float | None:
        """Arrival (wall clock s) of the first alert with evidence captured after ``fault_at``."""
        fault_ms = fault_at * 1000
        arrivals = [t for t, _ce, a in self.alerts_since(fault_at) if a["face"]["frame"]["captured_at_ms"] > fault_ms]
        return min(arrivals) if arrivals else None

    # -- one scenario ------------------------------------------------------------------------

    def figures(self, scenario: str, fault_at: float, window_end: float, crash_restarts_before: int,
                injected: list[Injected], alerts_before: int) -> dict:
        with self._lock:
            alerts = list(self.alerts)
            dead = list(self.dead)
            crash_restarts = self.crash_restarts - crash_restarts_before
        recovered = self.first_alert_captured_after(fault_at)
        seen = Counter(ce for _t, ce, _a in alerts[:alerts_before])
        duplicates = 0
        for _t, ce, _a in alerts[alerts_before:]:
            duplicates += seen[ce] > 0
            seen[ce] += 1
        evidence = {(a["subject_id"], a["face"]["frame"]["seq"], a["face"]["frame"]["captured_at_ms"]) for _t, _ce, a in alerts}
        watchlisted = self.watchlisted()
        owed, lost = [], []
        if recovered is not None:
            for walk in self.walks():
                # Every walk still in view VIEW_AFTER_S after recovery, whenever it entered: one
                # that entered during the outage may have spent its shots there, and detect must
                # send it again (a rewound batch or a lost group reopens its tracks).
                if (walk.identity in watchlisted
                        and walk.last_ms >= recovered * 1000 + VIEW_AFTER_S * 1000
                        and walk.last_ms <= (window_end - SETTLE_S) * 1000):
                    owed.append(walk)
                    if not any((walk.identity, seq, at) in evidence for seq, at in walk.frames):
                        lost.append(walk)
        with self._lock:
            matched = set(self.matched)
        # A lost walk the matcher never matched: no face of it scored over the threshold (the
        # model's miss on that walk), or it was dropped upstream; one it matched was lost after.
        unmatched = [w for w in lost if not any((w.identity, seq, at) in matched for seq, at in w.frames)]
        never_embedded = [w for w in unmatched if not self.was_embedded(w)]
        wanted = {(i.topic, i.partition, i.offset, service) for i in injected for service in READERS[i.topic]}
        got = {(d.get("lfr_dlq_topic"), int(d.get("lfr_dlq_partition", -1)), int(d.get("lfr_dlq_offset", -1)), d.get("lfr_dlq_service"))
               for d in dead if d.get("lfr_dlq_reason")}
        kinds = {(i.topic, i.partition, i.offset): i.kind for i in injected}
        reasons = sorted({(kinds[(d["lfr_dlq_topic"], int(d["lfr_dlq_partition"]), int(d["lfr_dlq_offset"]))], d["lfr_dlq_reason"])
                          for d in dead if (d.get("lfr_dlq_topic"), int(d.get("lfr_dlq_partition", -1)), int(d.get("lfr_dlq_offset", -1))) in kinds})
        missing = sorted(wanted - got)
        return {
            "scenario": scenario,
            "duplicate_alerts": duplicates,
            "lost_alerts": len(lost),
            "dead_lettered": len(wanted & got),
            "crash_restarts": crash_restarts,
            "recovery_s": round(recovered - fault_at, 2) if recovered is not None else None,
            "poison_records": len(injected),
            "dead_letters_expected": len(wanted),
            "missing_dead_letters": [f"{t}[{p}]@{o} by {s} ({kinds[(t, p, o)]})" for t, p, o, s in missing],
            "dead_letter_reasons": [f"{kind}: {reason}" for kind, reason in reasons],
            "walks_owed_alerts": len(owed),
            "lost_walks": [f"{w.identity} ({w.face_width} px, {(w.last_ms - w.first_ms) / 1000:.1f} s in view)" for w in lost],
            "lost_unmatched": len(unmatched),
            "lost_never_embedded": len(never_embedded),
            "alerts": len(alerts) - alerts_before,
            "alerted_after_fault": dict(Counter(a["subject_id"] for _t, _ce, a in alerts[alerts_before:]
                                                if a["face"]["frame"]["captured_at_ms"] > fault_at * 1000)),
            "walks_after_fault": dict(Counter(w.identity for w in self.walks() if w.identity in watchlisted and w.first_ms > fault_at * 1000)),
        }

    def write_log_tail(self, path: Path) -> None:
        lines = {name: (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:] for name in SERVICES}
        path.write_text(json.dumps(lines, indent=1), encoding="utf-8")


def kill_broker(run: CrowdRun) -> None:
    restarts = run.broker_supervisor.restarts
    os.kill(run.pipeline.broker.pid, signal.SIGKILL)
    wait_until(lambda: run.broker_supervisor.restarts > restarts and run.pipeline.broker.running, 30, "the broker back")
    # Memory storage: the watchlist and the deployment are gone with every topic; the operator
    # re-enrols and re-opens the deployment (as `make demo` does).
    run.enrol_and_open()


