"""``lfr run review``: the officer review console (Starlette on uvicorn) and its Kafka edges."""

from __future__ import annotations

import logging
import time

import uvicorn

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
    reader = Reader(settings, board, keys, custody)
    sweeper = Sweeper(settings, board, keys, custody, writer, clock)

    def report() -> dict:
        from services.report.build import build_report
        from services.report.topics import read_inputs

        return build_report(read_inputs(settings))

    console = Console(settings, board, custody, writer, sweeper, UsersFile(settings.users_file),
                      SessionStore(settings.session_ttl_s, settings.session_idle_s),
                      LoginLimiter(settings.login_max_failures, settings.login_window_s), clock, report)
    return console, reader


def main() -> int:
    settings = start_service(SERVICE, ReviewSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    console, reader = build_console(settings)
    reader.start()
    console.sweeper.start()
    deadline = time.monotonic() + 60
    while not console.sweeper.keys.all() and time.monotonic() < deadline:
        time.sleep(0.2)  # a transit key is published before the dispatcher can need one
    reader.ready.wait(max(0.0, deadline - time.monotonic()))
    logger.info("review ready", extra={"url": settings.public_url, "port": settings.http_port})
    config = uvicorn.Config(build_app(console), host=settings.http_host, port=settings.http_port, log_config=None,
                            access_log=False, proxy_headers=False, timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run()  # returns on SIGTERM/SIGINT
    finally:
        reader.stop_event.set()
        console.sweeper.stop_event.set()
        reader.join(10)
        console.sweeper.join(10)
    return 0
