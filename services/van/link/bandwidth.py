"""The link's bandwidth cap: a token bucket of bytes per second (pure; the caller owns the clock)."""

from __future__ import annotations


class TokenBucket:
    """``rate`` bytes per second, at most ``burst`` saved up; rate 0 means no cap.

    A record larger than the burst still goes, once the bucket is full (it then owes the
    difference), so one big record can never block the queue for ever.
    """

    def __init__(self, rate: float, burst: float, now_s: float) -> None:
        if rate < 0 or burst <= 0:
            raise ValueError("rate must be >= 0 and burst > 0")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now_s

    def _refill(self, now_s: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now_s - self._at) * self.rate)
        self._at = now_s

    def wait_s(self, size: int, now_s: float) -> float:
        """Seconds until ``size`` bytes may go (0: take them now with ``take``)."""
        if self.rate == 0:
            return 0.0
        self._refill(now_s)
        needed = min(float(size), self.burst)
        return 0.0 if self._tokens >= needed else (needed - self._tokens) / self.rate

    def take(self, size: int, now_s: float) -> None:
        if self.rate == 0:
            return
        self._refill(now_s)
        self._tokens -= size
