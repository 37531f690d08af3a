"""Health endpoints: ``/livez`` and ``/readyz`` served beside ``/metrics`` on the metrics port.

Why not ``GET /metrics``: prometheus-client answers it from its own thread, so a poll loop that
is stuck stays "healthy" and a matcher whose watchlist is still loading looks ready.

Liveness (``/livez``): every *loop* that registered itself made progress within its bound.
A loop calls ``heartbeat(name)`` each turn (a poll that returned nothing is progress too: the
loop is idle by choice). Inside ``with idle(name):`` a loop is waiting on purpose (a backoff,
a drain) and counts as alive however long that lasts. A process with no loop registered yet is
alive (it is starting; the startup probe and readiness cover that phase).

Readiness (``/readyz``): every registered *check* passes. A check is a callable returning
``True``/``False`` or ``(ok, detail)``; an exception counts as not ready (its class is the detail).
Components plug in with one line, for example::

    from services.common import health
    health.add_check("watchlist", lambda: materialiser.ready.is_set())
    health.add_check("deployments", lambda: (view.loaded, f"{len(view)} deployments"))
    health.remove_check("watchlist")            # e.g. when the component stops

Both answer 200 (all pass) or 503 with a JSON body naming each check::

    {"status": "ok"|"fail", "checks": {"kafka": {"ok": true, "detail": "..."}, ...}}

Checks run on the HTTP server's thread for each probe: keep them cheap (read a flag, or cache a
broker round trip, as ``CachedCheck`` does).

``serve(port)`` starts the one HTTP server (threaded) for /metrics, /livez and /readyz; it
replaces prometheus-client's ``start_http_server``. ``Health`` instances are independent (tests
run several runners in one process); the module-level functions use the process default.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app

logger = logging.getLogger(__name__)

CheckResult = bool | tuple[bool, str]
Check = Callable[[], CheckResult]
DEFAULT_LIVENESS_BOUND_S = 120.0


class Health:
    """Loops (liveness) and checks (readiness) of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._loops: dict[str, list[Any]] = {}  # name -> [last beat, bound_s, idle depth]
        self._checks: dict[str, Check] = {}

    # -- liveness ----------------------------------------------------------------------------

    def heartbeat(self, loop: str = "main", bound_s: float | None = None) -> None:
        """The loop made progress now. ``bound_s`` (first call, or to change it) is how long it
        may go without another beat before /livez fails."""
        now = self._clock()
        with self._lock:
            state = self._loops.get(loop)
            if state is None:
                self._loops[loop] = [now, bound_s or DEFAULT_LIVENESS_BOUND_S, 0]
            else:
                state[0] = now
                if bound_s is not None:
                    state[1] = bound_s

    @contextlib.contextmanager
    def idle(self, loop: str = "main") -> Iterator[None]:
        """The loop waits on purpose inside this block (backoff, drain): alive throughout."""
        self.heartbeat(loop)
        with self._lock:
            self._loops[loop][2] += 1
        try:
            yield
        finally:
            with self._lock:
                self._loops[loop][2] -= 1
            self.heartbeat(loop)

    def forget_loop(self, loop: str) -> None:
        with self._lock:
            self._loops.pop(loop, None)

    def liveness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        now = self._clock()
        result = {}
        with self._lock:
            for name, (last, bound, idle_depth) in self._loops.items():
                age = now - last
                ok = idle_depth > 0 or age <= bound
                detail = "idle by choice" if idle_depth > 0 else f"last progress {age:.1f} s ago (bound {bound:g} s)"
                result[name] = {"ok": ok, "detail": detail}
        return all(c["ok"] for c in result.values()), result

    # -- readiness ---------------------------------------------------------------------------

    def add_check(self, name: str, check: Check) -> None:
        """Register (or replace) a readiness check under ``name``."""
        with self._lock:
            self._checks[name] = check

    def remove_check(self, name: str) -> None:
        with self._lock:
            self._checks.pop(name, None)

    def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        with self._lock:
            checks = dict(self._checks)
        result = {}
        for name, check in checks.items():
            try:
                outcome = check()
                ok, detail = outcome if isinstance(outcome, tuple) else (bool(outcome), "")
            except Exception as exc:  # noqa: BLE001 - a failing check means "not ready", never a 500
                ok, detail = False, f"check raised {type(exc).__name__}"
            result[name] = {"ok": bool(ok), "detail": str(detail)}
        return bool(result) and all(c["ok"] for c in result.values()), result

    # -- HTTP ----------------------------------------------------------------------------------

    def wsgi_app(self, registry=REGISTRY) -> Callable:
        metrics_app = make_wsgi_app(registry)

        def app(environ: dict, start_response: Callable) -> list[bytes]:
            path = environ.get("PATH_INFO", "/")
            if path in ("/livez", "/readyz"):
                ok, checks = self.liveness() if path == "/livez" else self.readiness()
                body = json.dumps({"status": "ok" if ok else "fail", "checks": checks}, sort_keys=True).encode()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
                )
                return [body]
            return metrics_app(environ, start_response)

        return app

    def serve(self, port: int, addr: str = "0.0.0.0", registry=REGISTRY) -> _Server | None:  # noqa: S104 - pods listen on all
        """Serve /metrics, /livez and /readyz on ``port`` from a daemon thread; 0 = off."""
        if not port:
            return None
        server = make_server(addr, port, self.wsgi_app(registry), _Server, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="health-http", daemon=True)
        thread.start()
        logger.info("metrics and health endpoints listening", extra={"port": server.server_port})
        return server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *_args: object) -> None:  # probes every few seconds: not worth a log line
        pass


class CachedCheck:
    """Wrap a slow check (a broker round trip) so probes call it at most every ``ttl_s``."""

    def __init__(self, check: Check, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._check = check
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._at = -float("inf")
        self._last: CheckResult = (False, "not checked yet")

    def __call__(self) -> CheckResult:
        with self._lock:
            if self._clock() - self._at >= self._ttl_s:
                try:
                    self._last = self._check()
                except Exception as exc:  # noqa: BLE001
                    self._last = (False, f"check raised {type(exc).__name__}")
                self._at = self._clock()
            return self._last


DEFAULT = Health()
heartbeat = DEFAULT.heartbeat
idle = DEFAULT.idle
forget_loop = DEFAULT.forget_loop
add_check = DEFAULT.add_check
remove_check = DEFAULT.remove_check
liveness = DEFAULT.liveness
readiness = DEFAULT.readiness
serve = DEFAULT.serve
