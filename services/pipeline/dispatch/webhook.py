"""Webhook sink: POST one alert as a structured-mode CloudEvent, with retries and backoff.

Retried: connection errors, timeouts, HTTP 408, 425, 429 and 5xx. Any other non-2xx answer
is a permanent refusal and is not retried. The caller dead-letters the alert when
:func:`deliver` returns an outcome that is not delivered. Nothing here logs the URL (it
may embed credentials), the token, the signing secret or the body. Every attempt is signed the
Standard Webhooks way (webhook_security.py); the URL must be https (http only to loopback).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import uuid
from dataclasses import dataclass, field

import aiohttp

from .webhook_security import WebhookSigner, check_webhook_url

RETRYABLE_STATUS = frozenset({408, 425, 429})


class WebhookDeliveryError(Exception):
    """The webhook did not accept the alert (after the last retry, or refused it outright)."""


@dataclass(frozen=True)
class WebhookConfig:
    url: str = field(repr=False)  # may embed credentials
    token: str | None = field(default=None, repr=False)
    signer: WebhookSigner | None = field(default=None, repr=False)
    timeout_s: float = 5.0
    max_retries: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        check_webhook_url(self.url)


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    error: str = ""  # short: status code or exception class, never the body or URL


async def deliver(
    session: aiohttp.ClientSession,
    config: WebhookConfig,
    body: bytes,
    content_type: str,
    *,
    on_retry: Callable[[int, str], None] = lambda attempt, error: None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    message_id: str | None = None,
) -> Delivery:
    """POST ``body``; ``message_id`` (the CloudEvent id) is the webhook-id of every attempt."""
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    headers = {"Content-Type": content_type}
    if config.token:
        headers["Authorization"] = f"Bearer {config.token}"
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    delay = config.backoff_initial_s
    attempts = config.max_retries + 1
    error = ""
    for attempt in range(1, attempts + 1):
        retryable = True
        if config.signer is not None:  # signed per attempt: the timestamp is the attempt's
            headers.update(config.signer.headers(message_id, body))
        try:
            async with session.post(config.url, data=body, headers=headers, timeout=timeout, allow_redirects=False) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return Delivery(True, attempt)
                error = f"HTTP {response.status}"
                retryable = response.status >= 500 or response.status in RETRYABLE_STATUS
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = type(exc).__name__
        if not retryable:
            return Delivery(False, attempt, f"{error} (not retried)")
        if attempt < attempts:
            on_retry(attempt, error)
            await sleep(delay)
            delay = min(delay * 2, config.backoff_max_s)
    return Delivery(False, attempts, f"{error} after {attempts} attempts")
