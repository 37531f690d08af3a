"""The ingest service: one worker thread per camera, one sender, the cameras file watched.

Stale-frame policy ``drop-oldest``: each camera has a small queue between capture and the
producer. A live system must not fall behind, so when the queue is full the oldest frame is
dropped, and a frame older than LFR_MAX_FRAME_AGE_MS when its turn comes is dropped too.
Every drop is counted per camera and reason (lfr_frames_dropped_total), frames the broker did
not take included: timed_out (broker down or topic missing), topic_missing, broker_unavailable,
too_large, producer_reset, delivery_failed.

Broker restart: a producer the broker forgot (UnknownProducerId, OutOfOrderSequence) is
replaced; frames it still held go back to the front of their camera's queue, where the
drop-oldest and too-old rules decide whether they are still worth sending. ``stall`` reports
frames waiting with no delivery for LFR_STALL_AFTER_S.

Back-pressure ``aimd-detect-lag/v1`` (backpressure.py): a probe thread reads detect's committed
offsets on the output topic every LFR_BACKPRESSURE_POLL_S and sets each camera's analysed rate;
the camera's worker sheds the frames in excess before encoding (lfr_frames_shed_total).
"""

from __future__ import annotations

import collections
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from services.common import delivery, health, metrics
from services.common.envelope import encode
from services.common.kafka_config import broker_reachable_check, client_config, producer_config
from services.common.service import EXIT_BAD_SETTINGS, start_service
from services.common.settings import IngestSettings
from services.common.stall import StallMonitor

from services.governance.deployments.enforcement import start_enforcement
from services.governance.deployments.policy import FRAMES_NOT_CAPTURED, NO_DEPLOYMENT, DeploymentPolicy

from .cameras import CameraConfig, load_cameras, redact
from .backpressure import POLICY as BACKPRESSURE_POLICY
from .backpressure import BackpressureConfig, CameraRate, SentLog
from .sources import CrowdSource, EncodedFrame, FolderSource, SourceError, StreamSource, open_source
from .stream_metrics import FRAMES_SENT

logger = logging.getLogger(__name__)
SERVICE = "ingest"
STALE_FRAME_POLICY = "drop-oldest"

FRAMES_CAPTURED = Counter("lfr_frames_captured_total", "Frames read from cameras", ["camera"])
FRAMES_DROPPED = Counter("lfr_frames_dropped_total", "Frames dropped by the stale-frame policy", ["camera", "reason"])
CAMERA_RECONNECTS = Counter("lfr_camera_reconnects_total", "Times a camera source was reopened", ["camera"])
CAMERA_LAST_FRAME = Gauge("lfr_camera_last_frame_timestamp_seconds", "Capture time of the camera's latest frame", ["camera"])
CAMERAS_ACTIVE = Gauge("lfr_cameras_active", "Cameras being read")
FRAMES_SHED = Counter("lfr_frames_shed_total", f"Frames not analysed because detect is behind (policy {BACKPRESSURE_POLICY})", ["camera"])
ANALYSED_FPS = Gauge("lfr_camera_analysed_fps", f"Frames per second a camera sends to detect now (policy {BACKPRESSURE_POLICY})", ["camera"])
DETECT_BACKLOG = Gauge("lfr_detect_backlog_seconds", "Age of the oldest frame detect has not committed, per partition of the frames topic", ["partition"])
# Deployment ids are bounded operational ids (one per authorised operation), allowed as labels.
DEPLOYMENT_FRAMES = Counter("lfr_deployment_frames_total", "Frames handed to the producer, per deployment", ["deployment"])


@dataclass
class _Frame:
    camera: CameraConfig
    seq: int
    captured_at_ms: int
    width: int
    height: int
    jpeg: bytes


class CameraWorker:
    def __init__(self, camera: CameraConfig, settings: IngestSettings, gate: Callable[[CameraConfig], str | None] | None = None) -> None:
        self.camera = camera
        self.settings = settings
        # The deployment policy (services/governance/deployments/policy.py): the reason this camera may not
        # capture now, or None. The service always sets it.
        self.gate = gate or (lambda _camera: None)
        self.queue: collections.deque[_Frame] = collections.deque()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.seq = 0
        self.rate = CameraRate(camera.fps, BackpressureConfig(
            max_lag_s=settings.backpressure_max_lag_s, recover_lag_s=settings.backpressure_recover_lag_s, min_fps=settings.backpressure_min_fps))
        self._truth = None
        if settings.truth_dir is not None and camera.source == "synthetic:crowd":
            settings.truth_dir.mkdir(parents=True, exist_ok=True)
            self._truth = open(settings.truth_dir / f"{camera.id}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.thread = threading.Thread(target=self._run, name=f"camera-{camera.id}", daemon=True)

    def start(self) -> None:
        # The drop-oldest policy's series exist from the start at 0, so a rate (and the
        # OpenLFRFramesDropped rule) reads 0 rather than "no data" for a camera that drops nothing.
        for reason in ("queue_full", "too_old"):
            FRAMES_DROPPED.labels(self.camera.id, reason)
        FRAMES_SHED.labels(self.camera.id)
        ANALYSED_FPS.labels(self.camera.id).set(self.rate.rate)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(10)
        with self.lock:
            dropped = len(self.queue)
            self.queue.clear()
        if dropped:
            FRAMES_DROPPED.labels(self.camera.id, "camera_removed").inc(dropped)
        # A removed camera is not a stale camera: drop its series so no alert fires for it.
        for gauge in (CAMERA_LAST_FRAME, ANALYSED_FPS):
            try:
                gauge.remove(self.camera.id)
            except KeyError:
                pass
        if self._truth is not None:
            self._truth.close()

    def take(self) -> _Frame | None:
        with self.lock:
            return self.queue.popleft() if self.queue else None

    def _enqueue(self, frame: _Frame) -> None:
        with self.lock:
            if len(self.queue) >= self.settings.frame_queue_size:
                self.queue.popleft()
                FRAMES_DROPPED.labels(self.camera.id, "queue_full").inc()
            self.queue.append(frame)

    def _refused(self) -> bool:
        """Count and wait one frame slot when the deployment forbids capture now."""
        reason = self.gate(self.camera)
        if reason is None:
            return False
        FRAMES_NOT_CAPTURED.labels(self.camera.id, reason).inc()
        self.stop_event.wait(min(0.2, 1.0 / self.camera.fps))
        return True

    def _run(self) -> None:
        delay = self.settings.reconnect_backoff_initial_s
        first = True
        while not self.stop_event.is_set():
            if self._refused():
                first = True  # the source stays closed; opening it again later is no reconnect
                continue
            if not first:
                CAMERA_RECONNECTS.labels(self.camera.id).inc()
                if self.stop_event.wait(delay):
                    return
                delay = min(delay * 2, self.settings.reconnect_backoff_max_s)
            first = False
            try:
                source = open_source(self.camera, self.settings.stream_open_timeout_s, self.settings.stream_read_timeout_s)
            except (SourceError, OSError, ValueError, KeyError) as exc:
                logger.warning("camera source unavailable", extra={"camera": self.camera.id, "source": redact(self.camera.source), "error": str(exc)})
                continue
            try:
                if self._capture(source):
                    delay = self.settings.reconnect_backoff_initial_s
            finally:
                source.close()
            if self.gate(self.camera) is not None:
                first = True

    def _capture(self, source) -> bool:
        """Read until stopped or the source fails; True if at least one frame came."""
        interval = 1.0 / self.camera.fps
        next_due = time.monotonic()
        got_any = False
        while not self.stop_event.is_set():
            if self.gate(self.camera) is not None:
                return got_any  # deployment ended or window closed: close the source now
            # A JPEG folder's files and an MJPEG stream's frames go out as they are (sources.py): no decode and re-encode.
            image = (source.read_encoded(self.camera.max_width, self.camera.max_height) if isinstance(source, (FolderSource, StreamSource))
                     else source.read())
            if image is None:
                logger.warning("camera stopped delivering frames", extra={"camera": self.camera.id})
                return got_any
            now = time.monotonic()
            if source.live and not source.paced and now < next_due:
                continue  # the stream is faster than the target rate: skip, do not queue
            got_any = True
            if not self.rate.admit():
                FRAMES_SHED.labels(self.camera.id).inc()  # detect is behind: not encoded, not sent
            else:
                captured_at_ms = int(time.time() * 1000)
                self._enqueue(self._forward(image, captured_at_ms) if isinstance(image, EncodedFrame) else self._encode(image, captured_at_ms))
                if isinstance(source, CrowdSource) and self._truth is not None:
                    self._truth.write(json.dumps({"camera_id": self.camera.id, "seq": self.seq - 1, "captured_at_ms": captured_at_ms, "faces": source.last_truth}) + "\n")
                    self._truth.flush()
            next_due = max(next_due + interval, now) if not source.live else now + interval
            if not source.live and self.stop_event.wait(max(0.0, next_due - time.monotonic())):
                return got_any
        return got_any

    def _encode(self, image: np.ndarray, captured_at_ms: int) -> _Frame:
        height, width = image.shape[:2]
        scale = min(1.0, self.camera.max_width / width, self.camera.max_height / height)
        if scale < 1.0:
            image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
            height, width = image.shape[:2]
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.camera.jpeg_quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return self._frame(jpeg.tobytes(), width, height, captured_at_ms)

    def _forward(self, encoded: EncodedFrame, captured_at_ms: int) -> _Frame:
        """A JPEG already within the camera's size: its bytes as they are (at the source's quality)."""
        return self._frame(encoded.jpeg, encoded.width, encoded.height, captured_at_ms)

    def _frame(self, jpeg: bytes, width: int, height: int, captured_at_ms: int) -> _Frame:
        FRAMES_CAPTURED.labels(self.camera.id).inc()
        CAMERA_LAST_FRAME.labels(self.camera.id).set(captured_at_ms / 1000)
        frame = _Frame(self.camera, self.seq, captured_at_ms, width, height, jpeg)
        self.seq += 1
        return frame


class IngestService:
    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.policy: DeploymentPolicy | None = None
        self.workers: dict[str, CameraWorker] = {}
        self.stop_event = threading.Event()
        self._producer_fatal = threading.Event()
        self._producer = self._new_producer()
        self._config_stamp: tuple[float, int] | None = None
        self._sent = SentLog()
        self._sent_lock = threading.Lock()
        self._partition_of: dict[str, int] = {}  # camera -> the partition its frames go to (its key's)
        health.add_check("kafka", health.CachedCheck(broker_reachable_check(settings)))
        health.add_check("cameras_file", lambda: (self._config_stamp is not None, f"{len(self.workers)} camera(s)"))
        self.stall = StallMonitor(SERVICE, settings.stall_after_s)
        health.add_check("not_stalled", lambda: (not self.stall.stalled, f"{self.stall.seconds_stalled:.0f} s without progress"))

    def _new_producer(self) -> Producer:
        # A live frame is worthless once stale: do not let librdkafka hold it for its default 5 min.
        timeout_ms = max(self.settings.max_frame_age_ms * 2, 5_000)
        return Producer({**producer_config(self.settings), "message.timeout.ms": timeout_ms, "error_cb": self._on_producer_error})

    def _on_producer_error(self, error) -> None:
        if delivery.is_fatal_idempotence(error):
            logger.error("fatal producer error; the producer will be replaced", extra={"error": error.str()})
            self._producer_fatal.set()
        else:
            logger.warning("kafka producer error", extra={"error": error.str()})

    def _recreate_producer(self) -> None:
        """The broker forgot this producer: purge it (its frames are requeued) and start a new one."""
        old = self._producer
        try:
            old.purge(in_queue=True, in_flight=True)
            old.poll(0)  # serve the purge delivery reports: they requeue the frames
        except (KafkaException, RuntimeError, SystemError) as exc:
            logger.warning("purging the old producer failed", extra={"error": str(exc)[:200]})
        self._producer_fatal.clear()
        self._producer = self._new_producer()
        delivery.PRODUCER_RECREATIONS.labels(SERVICE).inc()

    def _serve(self, timeout_s: float = 0) -> int:
        """poll()/flush() that marks a fatal producer for replacement instead of raising."""
        try:
            return self._producer.flush(timeout_s) if timeout_s else self._producer.poll(0)
        except (KafkaException, SystemError) as exc:
            logger.warning("producer failed while serving deliveries", extra={"error": str(exc)[:200]})
            self._producer_fatal.set()
            return len(self._producer)

    def request_stop(self) -> None:
        """Stop the cameras, send what is queued, flush (SIGTERM does this)."""
        self.stop_event.set()

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.request_stop())
        try:
            view, self.policy = start_enforcement(self.settings, SERVICE)
        except (TimeoutError, RuntimeError) as exc:  # e.g. the topic is missing: say so, exit 1
            logger.error("cannot start: deployments not loaded", extra={"error": str(exc.__cause__ or exc)})
            return 1
        probe = threading.Thread(target=self._probe_detect_lag, name="detect-lag", daemon=True)
        if self.settings.backpressure_enabled:
            probe.start()
        try:
            return self._loop()
        finally:
            view.stop()
            if probe.is_alive():
                probe.join(10)

    def _probe_detect_lag(self) -> None:
        """Back-pressure's thin runner: detect's committed offsets -> each camera's rate."""
        consumer = None
        while not self.stop_event.wait(self.settings.backpressure_poll_s):
            try:
                if consumer is None:
                    # Never subscribes, so it never joins detect's group: it only reads its offsets.
                    consumer = Consumer({**client_config(self.settings), "group.id": self.settings.detect_group_id,
                                         "enable.auto.commit": False})
                with self._sent_lock:
                    partitions = sorted(set(self._partition_of.values()))
                committed = {tp.partition: tp.offset for tp in consumer.committed(
                    [TopicPartition(self.settings.output_topic, p) for p in partitions], timeout=5)} if partitions else {}
                with self._sent_lock:
                    ages = self._sent.backlog_age_s(committed, int(time.time() * 1000))
                    partition_of = dict(self._partition_of)
            except (KafkaException, RuntimeError) as exc:
                logger.warning("detect lag unavailable; analysed rates held", extra={"error": str(exc)[:200]})
                continue
            for partition, age in ages.items():
                if age is not None:
                    DETECT_BACKLOG.labels(str(partition)).set(age)
            for worker in list(self.workers.values()):
                partition = partition_of.get(worker.camera.id)
                ANALYSED_FPS.labels(worker.camera.id).set(worker.rate.update(ages.get(partition) if partition is not None else None))
        if consumer is not None:
            consumer.close()

    def _gate(self, camera: CameraConfig) -> str | None:
        return self.policy.capture_refusal(camera.id, camera.deployment_id) if self.policy is not None else NO_DEPLOYMENT

    def _loop(self) -> int:
        next_config_check = 0.0
        logger.info("ingest started", extra={"cameras_file": str(self.settings.cameras_file), "policy": STALE_FRAME_POLICY})
        while not self.stop_event.is_set():
            health.heartbeat(SERVICE, self.settings.liveness_timeout_s)
            if time.monotonic() >= next_config_check:
                self.reload()
                next_config_check = time.monotonic() + self.settings.config_poll_interval_s
            if self._producer_fatal.is_set():
                self._recreate_producer()
            if not self._send_some():
                self.stop_event.wait(0.005)
            self._serve()
            if len(self._producer) or any(w.queue for w in list(self.workers.values())):
                self.stall.waiting()
            else:
                self.stall.progress()
        health.forget_loop(SERVICE)  # draining: bounded by the shutdown timeout instead
        for worker in list(self.workers.values()):
            worker.stop_event.set()
        while self._send_some():
            pass
        for worker in list(self.workers.values()):
            worker.stop()
        remaining = self._serve(self.settings.shutdown_timeout_s)
        logger.info("ingest stopped", extra={"unsent": remaining})
        return 0 if remaining == 0 else 1

    def reload(self) -> None:
        """Apply the cameras file: start new cameras, stop removed ones, restart changed ones."""
        path = self.settings.cameras_file
        try:
            stat = path.stat()
            stamp = (stat.st_mtime, stat.st_size)
        except FileNotFoundError:
            stamp = (0.0, 0)
        if stamp == self._config_stamp:
            return
        try:
            cameras = load_cameras(path)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            logger.error("cameras file invalid; keeping the current cameras", extra={"error": str(exc)})
            self._config_stamp = stamp
            return
        self._config_stamp = stamp
        for camera_id in list(self.workers):
            if camera_id not in cameras or cameras[camera_id] != self.workers[camera_id].camera:
                self.workers.pop(camera_id).stop()
                logger.info("camera stopped", extra={"camera": camera_id})
        for camera_id, camera in cameras.items():
            if camera_id not in self.workers:
                worker = CameraWorker(camera, self.settings, self._gate)
                self.workers[camera_id] = worker
                worker.start()
                logger.info("camera started", extra={"camera": camera_id, "source": redact(camera.source), "fps": camera.fps})
        CAMERAS_ACTIVE.set(len(self.workers))

    def _send_some(self) -> bool:
        """One frame from each camera with something queued; False when all queues are empty."""
        sent = False
        now_ms = int(time.time() * 1000)
        for worker in list(self.workers.values()):
            frame = worker.take()
            if frame is None:
                continue
            sent = True
            refusal = self._gate(frame.camera)
            if refusal is not None:
                # Queued before the deployment stopped: never sent.
                FRAMES_DROPPED.labels(frame.camera.id, "deployment_" + refusal).inc()
                continue
            if now_ms - frame.captured_at_ms > self.settings.max_frame_age_ms:
                FRAMES_DROPPED.labels(frame.camera.id, "too_old").inc()
                continue
            value = encode(
                "lfr.frames.v1",
                {
                    "camera_id": frame.camera.id,
                    "deployment_id": frame.camera.deployment_id,
                    "seq": frame.seq,
                    "captured_at_ms": frame.captured_at_ms,
                    "width": frame.width,
                    "height": frame.height,
                    "media_type": "image/jpeg",
                    "image": frame.jpeg,
                },
            )
            try:
                self._producer.produce(
                    self.settings.output_topic,
                    key=frame.camera.id.encode(),
                    value=value,
                    on_delivery=lambda err, msg, f=frame, w=worker: self._delivered(err, msg, f, w),
                )
                DEPLOYMENT_FRAMES.labels(frame.camera.deployment_id).inc()
            except BufferError:
                # The producer is backed up: the frame goes back to the front of its queue, where
                # the drop-oldest policy applies while the broker catches up.
                self._requeue(worker, frame)
                self._serve(0.05)
            except KafkaException as exc:
                error = exc.args[0]
                if delivery.is_fatal_idempotence(error):
                    self._producer_fatal.set()
                    self._requeue(worker, frame)
                    continue
                # e.g. larger than message.max.bytes: this frame can never be sent; the camera goes on.
                FRAMES_DROPPED.labels(frame.camera.id, "unsendable").inc()
                logger.warning("frame cannot be produced", extra={"camera": frame.camera.id, "error": error.str()})
        return sent

    def _requeue(self, worker: CameraWorker, frame: _Frame) -> None:
        with worker.lock:
            worker.queue.appendleft(frame)
            while len(worker.queue) > self.settings.frame_queue_size:
                worker.queue.popleft()  # the drop-oldest policy, as for any full queue
                FRAMES_DROPPED.labels(frame.camera.id, "queue_full").inc()

    def _delivered(self, error, message, frame: _Frame, worker: CameraWorker) -> None:
        if error is None:
            metrics.MESSAGES_PRODUCED.labels(SERVICE, message.topic()).inc()
            FRAMES_SENT.labels(frame.camera.id).inc()
            with self._sent_lock:
                self._partition_of[frame.camera.id] = message.partition()
                self._sent.add(message.partition(), message.offset(), frame.captured_at_ms)
            self.stall.progress()
            return
        reason = delivery.unsent_reason(error)
        if delivery.is_fatal_idempotence(error) or reason == "timed_out":
            # After an embedded-broker restart the old producer can time out every frame
            # without a fatal error (stale producer id); a fresh one resumes at once.
            self._producer_fatal.set()
        if reason == "producer_reset" and self.workers.get(frame.camera.id) is worker and not worker.stop_event.is_set():
            self._requeue(worker, frame)  # sent again by the new producer if still fresh enough
            return
        FRAMES_DROPPED.labels(frame.camera.id, reason).inc()
        logger.warning("frame not delivered", extra={"camera": frame.camera.id, "reason": reason, "error": error.str()})


def main() -> int:
    settings = start_service(SERVICE, IngestSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    return IngestService(settings).run()
