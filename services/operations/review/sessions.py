"""Server-side sessions and the login rate limit (in memory: a restart signs everyone out).

The cookie holds only a random token; the session, its CSRF token and its expiry live here, so
signing out or expiry really ends it.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .users import User


@dataclass
class Session:
    token: str
    user: User
    csrf: str
    created_s: float
    seen_s: float


class SessionStore:
    def __init__(self, ttl_s: float, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.idle_s, self.clock = ttl_s, idle_s, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: User) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            if now - session.created_s > self.ttl_s or now - session.seen_s > self.idle_s:
                del self._sessions[token]
                return None
            session.seen_s = now
            return session

    def end(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class LoginLimiter:
    """After ``max_failures`` wrong passwords for a key (``user:NAME`` or ``ip:ADDRESS``) within
    ``window_s``, sign-in is refused (429) for that key, even with the right password: for
    ``window_s`` the first time, then twice as long at each further lockout (up to a day), until a
    sign-in succeeds. ``max_failures_by_prefix`` sets another limit for a kind of key (addresses)."""

    max_failures: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    max_failures_by_prefix: dict[str, int] = field(default_factory=dict)
    max_lockout_s: float = 86_400.0
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)
    _lockouts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = kept
        return kept

    def _limit(self, key: str) -> int:
        return self.max_failures_by_prefix.get(key.split(":", 1)[0], self.max_failures)

    def locked(self, *keys: str) -> bool:
        with self._lock:
            return any(self.clock() < self._locked_until.get(k, float("-inf")) for k in keys)

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                recent = self._recent(key)
                recent.append(self.clock())
                if len(recent) >= self._limit(key):
                    count = self._lockouts.get(key, 0)
                    self._locked_until[key] = self.clock() + min(self.window_s * 2 ** count, self.max_lockout_s)
                    self._lockouts[key] = count + 1
                    self._failures[key] = []

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
                self._lockouts.pop(key, None)
                self._locked_until.pop(key, None)
