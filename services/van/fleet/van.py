"""`lfr van run`: a whole van on embedded defaults, one command (issue #26 point 1).

The embedded broker (topics applied), then the van's services as separate processes: ingest,
detect, embed, the matcher on the in-process index (LFR_QDRANT_PATH=:memory:), dispatch, the
review console and the link to the force's core (services/van/link, through the core intake's
landing topic). The runner itself publishes the van's heartbeat every LFR_HEARTBEAT_INTERVAL_S
and crypto-erases bundles past their window + grace every LFR_VAN_ERASE_CHECK_S, with or
without a link. A state disk with less than LFR_VAN_MIN_FREE_MB free stops capture (ingest) and
says so (policy stop_capture): queued outcomes are never dropped to make room. SIGTERM or SIGINT stops the services upstream first, then the broker.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from services.common.metrics import build_version

from .heartbeat import build_heartbeat, publish_heartbeat
from .settings import VanRunSettings
from .vanstore import held_bundles

logger = logging.getLogger(__name__)

#: the van's services in pipeline order (stopped in this order too: upstream first)
VAN_SERVICES = ("ingest", "detect", "embed", "matcher", "dispatch", "review", "link")
READY_MARKERS = {"link": '"msg": "link forwarding"'}


def captured_frames(metrics_text: str) -> dict[str, float]:
    """camera -> lfr_frames_captured_total from ingest's /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "lfr_frames_captured_total" and "camera" in sample.labels:
                counts[sample.labels["camera"]] = sample.value
    return counts


def frame_rates(before: dict[str, float], after: dict[str, float], elapsed_s: float) -> dict[str, float]:
    """Frames per second per camera between two readings (a camera new since then: from zero)."""
    if elapsed_s <= 0:
        return {camera: 0.0 for camera in after}
    return {camera: max(0.0, (count - before.get(camera, 0.0)) / elapsed_s) for camera, count in after.items()}


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: the named policy for a full van disk: stop capturing (ingest), keep every queued outcome
DISK_FULL_POLICY = "stop_capture"


def capture_allowed(free_bytes: int, min_free_bytes: int, capturing: bool) -> bool:
    """Capture while free space stays at or above the floor; once stopped, resume only at twice
    the floor, so a disk hovering at the floor does not start and stop ingest every few seconds."""
    return free_bytes >= (min_free_bytes if capturing else 2 * min_free_bytes)


def service_env(settings: VanRunSettings, state_dir: Path) -> dict[str, str]:
    """What every van process gets on top of the embedded pipeline's env (services/tools/demo/pipeline.py)."""
    env = {
        "LFR_VAN_ID": settings.van_id,
        "LFR_FORCE": settings.force,
        "LFR_LINK_OUTBOX_PATH": str(state_dir / "outbox.sqlite"),
        "LFR_LINK_CORE_BOOTSTRAP_SERVERS": settings.link_core_bootstrap_servers,
    }
    return env


class Van:
    """Start, watch and stop one van; ``report`` receives one line per event (the CLI prints them)."""

    def __init__(self, settings: VanRunSettings, workdir: Path, report: Callable[[str], None] = print) -> None:
        from services.tools.demo.pipeline import READY_MARKERS as PIPELINE_MARKERS, Pipeline  # noqa: PLC0415

        PIPELINE_MARKERS.update(READY_MARKERS)
        self.settings = settings
        self.state_dir = settings.van_state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.report = report
        self.pipeline = Pipeline(workdir, extra_env=service_env(settings, self.state_dir))
        if not self.pipeline.cameras_file.exists():
            self.pipeline.cameras_file.write_text(json.dumps({"cameras": []}), encoding="utf-8")
        self.stop_event = threading.Event()
        self._producer = None
        self.capturing = True
        self.ingest_port = _free_port()  # its /metrics gives the cameras' frame rates for the heartbeat
        self._frames: tuple[float, dict[str, float]] | None = None

    def start(self) -> None:
        self.pipeline.start_broker()
        if self.settings.force != "default":  # the force's own topic names (services/governance/forces)
            from confluent_kafka.admin import AdminClient  # noqa: PLC0415

            from services.common.topics import apply_topics, load_topic_specs  # noqa: PLC0415
            from services.governance.forces.topics import specs_for_force  # noqa: PLC0415

            apply_topics(AdminClient({"bootstrap.servers": self.pipeline.bootstrap}), specs_for_force(load_topic_specs(), self.settings.force))
        for service in VAN_SERVICES:
            self.pipeline.start(service, env={"LFR_METRICS_PORT": str(self.ingest_port)} if service == "ingest" else None)
        self.pipeline.wait_ready(VAN_SERVICES, timeout_s=self.settings.van_ready_timeout_s)
        from confluent_kafka import Producer  # noqa: PLC0415

        self._producer = Producer({"bootstrap.servers": self.pipeline.bootstrap, "enable.idempotence": True, "acks": "all"})
        self.report(json.dumps({"van": self.settings.van_id, "state": "healthy", "bootstrap": self.pipeline.bootstrap,
                                "services": list(VAN_SERVICES)}))

    def failed(self) -> list[str]:
        return [name for name, process in self.pipeline.processes.items() if process.poll() is not None]

    def start_ingest(self) -> None:
        self.pipeline.start("ingest", env={"LFR_METRICS_PORT": str(self.ingest_port)})

    def check_disk(self) -> bool:
        """Policy stop_capture: a full state disk stops ingest (no new frames, so no new outcomes)
        and says so; the outbox keeps every outcome already queued. Ingest restarts once space is back."""
        import shutil  # noqa: PLC0415

        free = shutil.disk_usage(self.state_dir).free
        allowed = capture_allowed(free, self.settings.van_min_free_mb * 2**20, self.capturing)
        if self.capturing and not allowed:
            self.capturing = False
            if "ingest" in self.pipeline.processes:
                self.pipeline.stop("ingest")
            logger.error("van disk full: capture stopped", extra={"free_bytes": free, "policy": DISK_FULL_POLICY})
            self.report(json.dumps({"van": self.settings.van_id, "state": "capture_stopped", "reason": "disk_full",
                                    "free_bytes": free, "policy": DISK_FULL_POLICY}))
        elif not self.capturing and allowed:
            self.capturing = True
            self.start_ingest()
            logger.warning("van disk has room again: capture resumed", extra={"free_bytes": free})
            self.report(json.dumps({"van": self.settings.van_id, "state": "capture_resumed", "free_bytes": free}))
        return self.capturing

    def cameras(self) -> dict[str, float]:
        """Each camera's frames per second since the last heartbeat, from ingest's counters."""
        import urllib.request  # noqa: PLC0415

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ingest_port}/metrics", timeout=2) as response:  # noqa: S310 - loopback
                counts = captured_frames(response.read().decode("utf-8", "replace"))
        except OSError:
            return {}
        now = time.monotonic()
        before = self._frames
        self._frames = (now, counts)
        return frame_rates(before[1], counts, now - before[0]) if before else {camera: 0.0 for camera in counts}

    def heartbeat(self) -> dict:
        from services.van.link.outbox import Outbox  # noqa: PLC0415

        outbox_path = self.state_dir / "outbox.sqlite"
        outbox = Outbox(outbox_path) if outbox_path.exists() else None
        now_ms = int(time.time() * 1000)
        try:
            body = build_heartbeat(van_id=self.settings.van_id, force=self.settings.force, now_ms=now_ms, held=held_bundles(self.state_dir),
                                   cameras=self.cameras(), backlog=outbox.backlog() if outbox else None,
                                   last_ack_ms=outbox.last_ack_ms() if outbox else None, down_after_s=self.settings.link_down_after_s,
                                   disk_path=self.state_dir, version=build_version(), build=self.settings.build_id)
        finally:
            if outbox is not None:
                outbox.close()
        publish_heartbeat(self._producer, self.settings.heartbeat_topic, body)
        return body

    def erase_due(self) -> int:
        if self.settings.van_key_file is None:
            return 0  # no van key: no bundle can have been taken in
        from services.van.link.outbox import Outbox  # noqa: PLC0415

        from .cli import open_store  # noqa: PLC0415

        outbox = Outbox(self.state_dir / "outbox.sqlite")
        try:
            erased = open_store(self.settings, outbox).erase_due(int(time.time() * 1000))
        finally:
            outbox.close()
        for erasure in erased:
            self.report(json.dumps({"van": self.settings.van_id, "erased": getattr(erasure, "bundle_id", str(erasure))}))
        return len(erased)

    def run(self) -> int:
        """Heartbeats, the disk check and erasure checks until stopped; 1 if a service died."""
        next_beat = next_erase = 0.0
        while not self.stop_event.is_set():
            dead = self.failed()
            if dead:
                self.report(json.dumps({"van": self.settings.van_id, "state": "failed", "exited": dead}))
                return 1
            now = time.monotonic()
            if now >= next_beat:
                self.check_disk()
            if now >= next_erase:
                self.erase_due()
                next_erase = now + self.settings.van_erase_check_s
            if now >= next_beat:
                try:
                    self.heartbeat()
                except Exception as exc:  # noqa: BLE001 - a missed heartbeat is reported, never fatal
                    logger.warning("heartbeat not published", extra={"error": str(exc)})
                next_beat = now + self.settings.heartbeat_interval_s
            self.stop_event.wait(0.5)
        return 0

    def stop(self) -> dict[str, int]:
        if self._producer is not None:
            self._producer.flush(5)
        order = {service: i for i, service in enumerate(VAN_SERVICES)}
        codes = {}
        for name in sorted(self.pipeline.processes, key=lambda n: order.get(n, 99)):
            codes[name] = self.pipeline.stop(name)
        self.pipeline.broker.stop()
        return codes


def run_van(workdir: Path) -> int:
    from services.common.errors import SettingsError  # noqa: PLC0415
    from services.common.logs import configure_logging  # noqa: PLC0415
    from services.common.settings import load_settings  # noqa: PLC0415

    try:
        settings = load_settings(VanRunSettings)
    except SettingsError as exc:
        print(f"lfr van run: {exc}", flush=True)
        return 2
    configure_logging("van", settings.log_level)
    van = Van(settings, workdir)
    signal.signal(signal.SIGTERM, lambda *_: van.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: van.stop_event.set())
    code = 1
    try:
        van.start()
        code = van.run()
    except (TimeoutError, RuntimeError) as exc:
        print(json.dumps({"van": settings.van_id, "state": "failed", "error": str(exc)}), flush=True)
    finally:
        codes = van.stop()
        clean = all(c == 0 for c in codes.values())
        print(json.dumps({"van": settings.van_id, "state": "stopped", "exit_codes": codes}), flush=True)
    return code if code else (0 if clean else 1)
