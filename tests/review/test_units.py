"""Pure parts of the console: users file, OIDC claims, custody retention, transit keys, sealing."""

from __future__ import annotations

import json
import pytest

from services.common.errors import SettingsError
from services.common.settings import ReviewSettings, load_settings
from services.governance.evidence.sealing import SealError, associated_data, open_sealed, public_bytes, seal
from services.operations.review.custody import Evidence, EvidenceCustody, TransitKeyStore
from services.operations.review.oidc import user_from_claims
from services.operations.review.sessions import LoginLimiter, SessionStore
from services.operations.review.users import User, UsersFile


def test_users_cli_add_list_remove_with_argon2id(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from services.cli import main

    path = tmp_path / "users.json"
    monkeypatch.setenv("LFR_NEW_USER_PASSWORD", "a long enough password")

    def lfr(*args):
        capsys.readouterr()
        code = main(["users", *args, "--users-file", str(path)])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    added = lfr("add", "pc-1", "--role", "operator", "--deployment", "van-1", "--password-from-env")
    assert added.returncode == 0, added.stderr
    assert lfr("add", "op-x", "--role", "operator", "--password-from-env").returncode == 2  # an operator needs a deployment
    stored = json.loads(path.read_text())
    assert stored["pc-1"]["hash"].startswith("$argon2id$") and "a long enough password" not in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600
    assert lfr("list").stdout.split() == ["pc-1", "operator", "default", "van-1"]  # name, role, force, deployments
    assert UsersFile(path).verify("pc-1", "a long enough password") == User("pc-1", "operator", ("van-1",))
    assert UsersFile(path).verify("pc-1", "wrong") is None and UsersFile(path).verify("nobody", "x") is None
    assert lfr("remove", "pc-1").returncode == 0 and lfr("remove", "pc-1").returncode == 1
    assert UsersFile(path).verify("pc-1", "a long enough password") is None


def test_oidc_claims_map_to_roles_and_refuse_the_rest():
    claims = {"preferred_username": "pc-7", "lfr_roles": ["operator"], "lfr_deployments": ["van-2"]}
    assert user_from_claims(claims, "lfr_roles", "lfr_deployments") == User("pc-7", "operator", ("van-2",))
    assert user_from_claims({"sub": "x", "lfr_roles": ["operator", "auditor"]}, "lfr_roles", "lfr_deployments").role == "auditor"
    assert user_from_claims({"sub": "x", "lfr_roles": ["operator"]}, "lfr_roles", "lfr_deployments") is None  # no deployment
    assert user_from_claims({"sub": "x", "lfr_roles": ["guest"]}, "lfr_roles", "lfr_deployments") is None
    assert user_from_claims({"sub": "x", "lfr_roles": "admin", "lfr_deployments": ["a"]}, "lfr_roles", "lfr_deployments").deployments == ()


def test_settings_bound_the_erasure_promise():
    with pytest.raises(SettingsError, match="300"):
        load_settings(ReviewSettings, transit_key_validity_s=200, transit_key_grace_s=200)
    with pytest.raises(SettingsError, match="LFR_REJECTED_ERASURE_S"):
        load_settings(ReviewSettings, rejected_erasure_s=301)
    with pytest.raises(SettingsError, match="OIDC_CLIENT"):
        load_settings(ReviewSettings, oidc_issuer="https://id.example.org")


def test_sessions_expire_and_the_limiter_locks_after_five(tmp_path):
    now = [0.0]
    store = SessionStore(ttl_s=100, idle_s=10, clock=lambda: now[0])
    session = store.create(User("a", "admin"))
    now[0] = 9
    assert store.get(session.token) is session
    now[0] = 25  # idle for 16 s
    assert store.get(session.token) is None
    limiter = LoginLimiter(5, 60, clock=lambda: now[0])
    for _ in range(4):
        limiter.failed("user:a")
    assert not limiter.locked("user:a")
    limiter.failed("user:a")
    assert limiter.locked("user:a")
    now[0] += 61
    assert not limiter.locked("user:a")


def test_custody_erases_after_retention_and_keys_after_grace(tmp_path):
    now = [1_000_000]
    custody = EvidenceCustody(tmp_path / "evidence", retention_ms=31 * 86_400_000, clock=lambda: now[0])
    assert custody.put(Evidence("a1", 0, "van-1", "image/jpeg", now[0], b"\xff\xd8one"))
    assert not custody.put(Evidence("a1", 0, "van-1", "image/jpeg", now[0], b"\xff\xd8again"))  # same revision: kept as is
    assert custody.put(Evidence("a1", 1, "van-1", "image/jpeg", now[0], b"\xff\xd8better"))
    assert custody.image("a1") == (b"\xff\xd8better", "image/jpeg")
    now[0] += 31 * 86_400_000 - 1
    assert custody.expired() == []
    now[0] += 1
    assert custody.expired() == ["a1"] and custody.erase("a1") and custody.image("a1") is None
    assert list((tmp_path / "evidence").iterdir()) == []

    keys = TransitKeyStore(tmp_path / "keys", validity_ms=60_000, grace_ms=120_000, clock=lambda: now[0])
    key = keys.ensure_current()
    assert key is not None and keys.ensure_current() is None
    blob = seal(key.public, b"chip", associated_data("a2", 0))
    assert open_sealed(keys.load(key.key_id).private, blob, associated_data("a2", 0)) == b"chip"
    with pytest.raises(SealError):
        open_sealed(key.private, blob, associated_data("a3", 0))  # bound to its alert
    now[0] += 60_000 + 120_000 - 1
    assert keys.destroy_expired() == []
    now[0] += 1
    assert keys.destroy_expired() == [key.key_id] and keys.load(key.key_id) is None
    assert public_bytes(key.private.public_key()) == key.public


def test_the_access_policy_for_every_role():
    """operator: own deployments only; supervisor and admin: every deployment and reports; auditor: reports only."""
    from services.operations.review.access import may_adjudicate, may_read_reports, may_see_deployment

    users = {"operator": User("o", "operator", ("van-1",)), "supervisor": User("s", "supervisor"),
             "auditor": User("a", "auditor"), "admin": User("d", "admin")}
    table = {role: (may_see_deployment(u, "van-1"), may_see_deployment(u, "van-2"), may_adjudicate(u, "van-1"),
                    may_adjudicate(u, "van-2"), may_read_reports(u)) for role, u in users.items()}
    assert table == {"operator": (True, False, True, False, False), "supervisor": (True, True, True, True, True),
                     "auditor": (False, False, False, False, True), "admin": (True, True, True, True, True)}
