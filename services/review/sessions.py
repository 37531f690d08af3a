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
    """After ``max_failures`` wrong passwords for a user (or from one address) within ``window_s``,
    sign-in is refused (429) until the window has passed, even with the right password."""

    max_failures: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        self._failures[key] = kept
        return kept

    def locked(self, *keys: str) -> bool:
        return any(len(self._recent(k)) >= self.max_failures for k in keys)

    def failed(self, *keys: str) -> None:
        for key in keys:
            self._recent(key).append(self.clock())

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
