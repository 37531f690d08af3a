"""Signed webhooks: https only (http to loopback alone), Standard Webhooks signatures that the
documented receiver check (docs/webhooks.md) and the reference library accept, secrets hidden."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import pytest
import standardwebhooks

from services.common.errors import SettingsError
from services.common.settings import DispatchSettings, load_settings
from services.pipeline.dispatch.webhook import WebhookConfig, deliver
from services.pipeline.dispatch.webhook_security import WebhookSigner

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def receiver_check(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """The receiver check of docs/webhooks.md, written from the specification (not our code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, sig.split(",", 1)[1])
               for sig in headers["webhook-signature"].split(" ") if sig.startswith("v1,"))


class _Receiver(BaseHTTPRequestHandler):
    seen: list[tuple[dict, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        _Receiver.seen.append((headers, body))
        ok = receiver_check(SECRET, headers, body)
        self.send_response(204 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def test_delivery_is_signed_and_the_documented_receiver_check_accepts_it(caplog):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.seen = []
    config = WebhookConfig(url=f"http://127.0.0.1:{server.server_port}/hook", token="bearer-t0ken", signer=WebhookSigner(SECRET))
    body = b'{"specversion":"1.0","id":"alert-42","data":{"note":"caf\xc3\xa9"}}'

    async def run():
        async with aiohttp.ClientSession() as session:
            return await deliver(session, config, body, "application/cloudevents+json", message_id="alert-42")

    try:
        with caplog.at_level(logging.DEBUG):
            result = asyncio.run(run())
    finally:
        server.shutdown()
        server.server_close()
    assert result.delivered  # the receiver answered 204 only because its check passed
    headers, received = _Receiver.seen[-1]
    assert headers["webhook-id"] == "alert-42" and headers["webhook-signature"].startswith("v1,")
    assert standardwebhooks.Webhook(SECRET).verify(received, headers)["id"] == "alert-42"  # the reference library agrees
    assert not receiver_check(SECRET, headers, received.replace(b"42", b"43"))  # a changed body fails
    forged = WebhookSigner("whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()).headers("alert-42", received)
    assert not receiver_check(SECRET, forged, received)
    stale = WebhookSigner(SECRET).headers("alert-42", received, now=__import__("datetime").datetime.fromtimestamp(time.time() - 3600, tz=__import__("datetime").timezone.utc))
    assert not receiver_check(SECRET, stale, received)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(received, stale)
    # Secrets never appear in a repr or a log line.
    secret_text = SECRET.removeprefix("whsec_")
    for text in (repr(config), repr(config.signer), caplog.text):
        assert secret_text not in text and "bearer-t0ken" not in text and "127.0.0.1" not in repr(config)


@pytest.mark.parametrize("url,accepted", [
    ("https://alerts.example.police.uk/hook", True),
    ("http://127.0.0.1:8080/hook", True),
    ("http://[::1]:8080/hook", True),
    ("http://localhost/hook", True),
    ("http://alerts.example.police.uk/hook", False),
    ("http://10.0.0.5/hook", False),
    ("http://127.0.0.1.nip.io/hook", False),
    ("ftp://127.0.0.1/hook", False),
])
def test_https_only_plain_http_to_loopback_alone(url, accepted):
    if accepted:
        settings = load_settings(DispatchSettings, webhook_url=url, webhook_signing_secret=SECRET)
        assert SECRET.removeprefix("whsec_") not in repr(settings)
        WebhookConfig(url=url)
    else:
        with pytest.raises(SettingsError, match="LFR_WEBHOOK_URL"):
            load_settings(DispatchSettings, webhook_url=url, webhook_signing_secret=SECRET)
        with pytest.raises(ValueError):
            WebhookConfig(url=url)


def test_a_url_needs_a_strong_signing_secret():
    with pytest.raises(SettingsError, match="LFR_WEBHOOK_SIGNING_SECRET is required"):
        load_settings(DispatchSettings, webhook_url="https://example.org/hook")
    with pytest.raises(SettingsError, match="at least 24 random bytes"):
        load_settings(DispatchSettings, webhook_url="https://example.org/hook", webhook_signing_secret="whsec_c2hvcnQ=")
