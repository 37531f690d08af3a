"""Sign-in abuse (issue #23): the lock is per account with exponential back-off; an address is
limited only when the console can trust it (a direct peer, or X-Forwarded-For from a trusted
proxy), so a lockout from behind the TLS-terminating proxy does not lock out everyone."""

from __future__ import annotations

import re

import httpx
import pytest

from services.operations.review.addresses import client_address, parse_proxies
from services.operations.review.sessions import LoginLimiter
from services.operations.review.users import UsersFile

from .helpers import review_settings, running_console

PASSWORD = "correct horse battery"


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies():
    proxies = parse_proxies("10.0.0.0/8, 127.0.0.1")
    assert client_address("198.51.100.7", "203.0.113.9", proxies) == "198.51.100.7"  # not a proxy: its header is ignored
    assert client_address("10.1.2.3", "203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("10.1.2.3", "1.2.3.4, 203.0.113.9, 10.9.9.9", proxies) == "203.0.113.9"  # right-most untrusted hop
    assert client_address("127.0.0.1", None, proxies) is None  # a proxy that names nobody: no address limit
    assert client_address("127.0.0.1", "not-an-address", proxies) is None
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_proxies("10.0.0.300")


def test_account_lock_backs_off_exponentially():
    now = [0.0]
    limiter = LoginLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed("user:a")
    assert limiter.locked("user:a")
    now[0] += 61
    assert not limiter.locked("user:a")
    for _ in range(3):
        limiter.failed("user:a")
    now[0] += 119
    assert limiter.locked("user:a")  # the second lockout lasts twice as long
    now[0] += 2
    assert not limiter.locked("user:a")
    limiter.succeeded("user:a")
    for _ in range(3):
        limiter.failed("user:a")
    now[0] += 61
    assert not limiter.locked("user:a")  # a successful sign-in starts the back-off again


def test_review_console_binds_loopback_by_default(monkeypatch):
    from services.common.settings import ReviewSettings, load_settings

    monkeypatch.delenv("LFR_HTTP_HOST", raising=False)
    assert load_settings(ReviewSettings).http_host == "127.0.0.1"


def sign_in(settings, username: str, password: str, forwarded_for: str) -> int:
    with httpx.Client(base_url=settings.public_url, follow_redirects=False, timeout=20,
                      headers={"X-Forwarded-For": forwarded_for}) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        return client.post("/login", data={"csrf": token, "username": username, "password": password}).status_code


def test_a_lockout_from_behind_the_proxy_does_not_lock_out_everyone(broker, tmp_path):
    # The test client reaches the console from 127.0.0.1, the proxy every officer comes through.
    settings = review_settings(broker.bootstrap_servers, tmp_path / "review", cookie_secure=False, trusted_proxies="127.0.0.1",
                               login_address_max_failures=8)
    users = UsersFile(settings.users_file)
    for name in ("op1", "sup", "aud"):
        users.add(name, PASSWORD, "supervisor")
    attacker, officer = "203.0.113.9", "198.51.100.7"
    with running_console(settings):
        assert [sign_in(settings, "op1", "wrong password!", attacker) for _ in range(5)] == [401] * 5
        assert sign_in(settings, "op1", PASSWORD, officer) == 429  # the account is locked, wherever from
        assert sign_in(settings, "sup", PASSWORD, officer) == 303  # everyone else still signs in
        # The attacker's own address is limited too, across user names.
        assert [sign_in(settings, f"guess{i}", "wrong password!", attacker) for i in range(3)] == [401] * 3
        assert sign_in(settings, "aud", PASSWORD, attacker) == 429
        assert sign_in(settings, "aud", PASSWORD, officer) == 303
