"""deliver() against a real local HTTP endpoint: what is retried, what is not, backoff."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest

from services.common.broker import free_port
from services.pipeline.dispatch.webhook import WebhookConfig, deliver


class _Endpoint(BaseHTTPRequestHandler):
    statuses: list[int] = []
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        _Endpoint.seen.append(dict(self.headers))
        status = _Endpoint.statuses.pop(0) if _Endpoint.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Endpoint.seen = []
    yield server
    server.shutdown()
    server.server_close()


def post(url: str, statuses: list[int], **config) -> tuple:
    _Endpoint.statuses = list(statuses)
    sleeps: list[float] = []
    retries: list[tuple[int, str]] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def run():
        async with aiohttp.ClientSession() as session:
            return await deliver(session, WebhookConfig(url=url, **config), b"{}", "application/cloudevents+json",
                                 on_retry=lambda attempt, error: retries.append((attempt, error)), sleep=fake_sleep)

    return asyncio.run(run()), sleeps, retries


def test_server_errors_are_retried_with_exponential_backoff(endpoint):
    url = f"http://127.0.0.1:{endpoint.server_port}/"
    result, sleeps, retries = post(url, [503, 429, 500], token="t0k", max_retries=3, backoff_initial_s=0.5, backoff_max_s=1.5)
    assert result.delivered and result.attempts == 4
    assert sleeps == [0.5, 1.0, 1.5] and [a for a, _ in retries] == [1, 2, 3]
    assert all(h["Authorization"] == "Bearer t0k" for h in _Endpoint.seen)
    result, _, _ = post(url, [503] * 5, max_retries=2, backoff_initial_s=0.01)
    assert not result.delivered and result.attempts == 3 and result.error == "HTTP 503 after 3 attempts"


def test_refusals_are_not_retried_and_unreachable_is(endpoint):
    url = f"http://127.0.0.1:{endpoint.server_port}/"
    result, sleeps, _ = post(url, [401], max_retries=3)
    assert not result.delivered and result.attempts == 1 and result.error == "HTTP 401 (not retried)" and sleeps == []
    assert "Authorization" not in _Endpoint.seen[-1]
    closed = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    result, sleeps, _ = post(closed, [], max_retries=1, backoff_initial_s=0.01, timeout_s=2)
    assert not result.delivered and result.attempts == 2 and "after 2 attempts" in result.error
