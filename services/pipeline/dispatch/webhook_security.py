"""Webhook transport rules and Standard Webhooks signing (https://www.standardwebhooks.com/).

Deliveries go over https only; plain http is allowed to a loopback address alone (tests, a
sidecar). Each delivery carries ``webhook-id`` (the CloudEvent id: the same on every retry, so
a receiver can drop duplicates), ``webhook-timestamp`` (seconds, per attempt) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, made by the reference
library ``standardwebhooks``. Nothing here logs or prints the secret.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from datetime import datetime, timezone
from urllib.parse import urlsplit

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24


def check_webhook_url(url: str) -> None:
    """ValueError unless https, or http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise ValueError("the webhook URL must be https:// (plain http:// only to a loopback address)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_secret(secret: str) -> None:
    try:
        raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook signing secret must be whsec_ followed by base64") from None
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"the webhook signing secret must hold at least {MIN_SECRET_BYTES} random bytes")


class WebhookSigner:
    """Signs one delivery attempt; the secret stays inside (no repr, no str)."""

    __slots__ = ("_webhook",)

    def __init__(self, secret: str) -> None:
        check_webhook_secret(secret)
        self._webhook = Webhook(secret)

    def headers(self, message_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        when = (now or datetime.now(tz=timezone.utc)).replace(microsecond=0)
        signature = self._webhook.sign(message_id, when, body.decode("utf-8"))
        return {"webhook-id": message_id, "webhook-timestamp": str(int(when.timestamp())), "webhook-signature": signature}

    def __repr__(self) -> str:
        return "WebhookSigner(secret=**********)"
