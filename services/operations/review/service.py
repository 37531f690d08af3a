"""``lfr run review``: the officer review console (Starlette on uvicorn) and its Kafka edges."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time

import uvicorn

from services.common import health
from services.common.service import EXIT_BAD_SETTINGS, start_service
from services.common.settings import ReviewSettings

from .app import Console, build_app
from .board import Board
from .custody import EvidenceCustody, TransitKeyStore
from .feeds import Reader, Sweeper, Writer, now_ms
from .sessions import LoginLimiter, SessionStore
from .users import UsersFile

logger = logging.getLogger(__name__)
SERVICE = "review"


def build_console(settings: ReviewSettings, clock=now_ms) -> tuple[Console, Reader]:
    board = Board()
    keys = TransitKeyStore(settings.state_dir / "keys", int(settings.transit_key_validity_s * 1000),
                           int(settings.transit_key_grace_s * 1000), clock)
    custody = EvidenceCustody(settings.state_dir / "evidence", int(settings.evidence_retention_s * 1000), clock)
    writer = Writer(settings)
    from services.van.fleet.fleetview import FleetView

    fleet = FleetView(export=False)
    reader = Reader(settings, board, keys, custody, writer, fleet)
    sweeper = Sweeper(settings, board, keys, custody, writer, clock)

    def report() -> dict:
        from services.operations.report.build import build_report
        from services.operations.report.topics import read_inputs

        return build_report(read_inputs(settings))

    def national() -> dict:
        """The national roll-up from every registered force's topics (the `lfr report --national` figures)."""
        from services.common.settings import ForceRegistrySettings, load_settings
        from services.governance.forces.store import read_registry
        from services.operations.report.cli import national_figures

        kafka = {"kafka_bootstrap_servers": settings.kafka_bootstrap_servers, "force": "default"}  # default's names, renamed per force
        return national_figures(read_registry(load_settings(ForceRegistrySettings, **kafka)), kafka)

    console = Console(settings, board, custody, writer, sweeper, UsersFile(settings.users_file),
                      SessionStore(settings.session_ttl_s, settings.session_idle_s),
                      LoginLimiter(settings.login_max_failures, settings.login_window_s, max_failures_by_prefix={"ip": settings.login_address_max_failures}), clock, report,
                      fleet, national)
    return console, reader


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown (exit 143); a stop asked for is a clean exit here."""

    def __init__(self, config: uvicorn.Config, stop: threading.Event) -> None:
        super().__init__(config)
        self.stop = stop

    @contextlib.contextmanager
    def capture_signals(self):
        def handle(_signum: int, _frame: object) -> None:
            self.stop.set()
            self.should_exit = True

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        if self.stop.is_set():
            self.should_exit = True
        yield


def main() -> int:
    settings = start_service(SERVICE, ReviewSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console, reader = build_console(settings)
    # /readyz on the metrics port: the alert feed is caught up, a transit key exists (without one
    # the dispatcher cannot seal evidence for us), and the erasure sweeper is running.
    health.add_check("alert_feed", lambda: (reader.ready.is_set() and reader.is_alive(), "alerts, evidence and adjudications read"))
    health.add_check("transit_key", lambda: (bool(console.sweeper.keys.all()), "a transit key is published"))
    health.add_check("evidence_sweeper", lambda: (console.sweeper.is_alive(), "erasure sweeper running"))
    reader.start()
    console.sweeper.start()
    deadline = time.monotonic() + 60
    while not console.sweeper.keys.all() and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.2)  # a transit key is published before the dispatcher can need one
    while not reader.ready.wait(0.2) and time.monotonic() < deadline and not stop.is_set():
        pass
    logger.info("review ready", extra={"url": settings.public_url, "port": settings.http_port})
    config = uvicorn.Config(build_app(console), host=settings.http_host, port=settings.http_port, log_config=None,
                            access_log=False, proxy_headers=False, timeout_graceful_shutdown=5)
    try:
        _Server(config, stop).run()  # returns on SIGTERM/SIGINT
    finally:
        reader.stop_event.set()
        console.sweeper.stop_event.set()
        reader.join(10)
        console.sweeper.join(10)
    return 0
