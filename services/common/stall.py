"""Stall detection: work is waiting but nothing has been produced or fetched for too long.

A broker restart used to leave every service up and silent; this makes it visible as a gauge
(``lfr_stalled``) and as ``StallMonitor.stalled`` for the readiness endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import Gauge

STALLED = Gauge("lfr_stalled", "1 while work waits and no produce or fetch has succeeded for the stall bound", ["service"])
SECONDS_SINCE_PROGRESS = Gauge(
    "lfr_seconds_since_progress", "Seconds since the last successful produce or fetch while work waits (0 when idle)", ["service"]
)


class StallMonitor:
    """Call ``progress()`` after each success and ``waiting()`` while work is held back."""

    def __init__(self, service: str, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.service = service
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._last_progress = clock()
        self._waiting_since: float | None = None
        STALLED.labels(service).set(0)

    def progress(self) -> None:
        """A produce was acknowledged, a batch finished, or the consumer is idle with nothing behind."""
        self._last_progress = self._clock()
        self._waiting_since = None
        self._publish()

    def waiting(self) -> None:
        """Work is in hand (a batch, lag, frames to send) but could not go out."""
        if self._waiting_since is None:
            self._waiting_since = self._clock()
        self._publish()

    @property
    def stalled(self) -> bool:
        return self.seconds_stalled > self.stall_after_s

    @property
    def seconds_stalled(self) -> float:
        if self._waiting_since is None:
            return 0.0
        return self._clock() - max(self._last_progress, self._waiting_since)

    def _publish(self) -> None:
        seconds = self.seconds_stalled
        SECONDS_SINCE_PROGRESS.labels(self.service).set(seconds)
        STALLED.labels(self.service).set(1 if seconds > self.stall_after_s else 0)
