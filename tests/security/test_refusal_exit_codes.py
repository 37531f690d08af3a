"""Every refusal exits 3, as the README's exit-code table and `lfr --help` say (issue #23), one
test per command that refuses; and commands that only read need no signing key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.cli import main as lfr
from services.common.settings import DeploymentSettings, load_settings
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.record import Window
from services.governance.deployments.store import DeploymentStore
from tests.deployments.test_rules import HOUR, calibration, draft
from tests.kafka_helpers import create_topics, unique

REFUSED = 3


@pytest.fixture
def admin(broker, kafka_env, monkeypatch):
    topics = {name: unique(name) for name in ("deployments", "watchlist", "audit", "dlq")}
    create_topics(broker.bootstrap_servers, *topics.values(), partitions=1)
    for name, topic in topics.items():
        monkeypatch.setenv(f"LFR_{name.upper()}_TOPIC", topic)
    admin = DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)), calibration=calibration())
    now = admin.clock()
    admin.create(replace(draft(), deployment_id="dep-1", window=Window(now, now + 4 * HOUR)))
    return admin


def refused(capsys, *argv: str) -> str:
    code = lfr(list(argv))
    err = capsys.readouterr().err
    assert code == REFUSED, (argv, code, err)
    return err


def test_deployment_create_refusal_exits_3(admin, capsys):
    assert "already exists" in refused(capsys, "deployment", "create", "--id", "dep-1")


def test_deployment_authorise_refusal_exits_3(admin, capsys):
    # The creator's own key: refused (and a deployment nobody created is refused the same way).
    assert "cannot authorise it" in refused(capsys, "deployment", "authorise", "dep-1")
    assert "no deployment dep-9" in refused(capsys, "deployment", "authorise", "dep-9")


def test_deployment_start_end_cancel_refusals_exit_3(admin, capsys):
    assert "only an authorised deployment can start" in refused(capsys, "deployment", "start", "dep-1")
    assert "only an active deployment can end" in refused(capsys, "deployment", "end", "dep-1")
    assert "a cancellation reason is required" in refused(capsys, "deployment", "cancel", "dep-1", "--reason", " ")


def test_keys_revoke_with_the_revoked_key_itself_exits_3(admin, capsys, signing_identity):
    from services.common.signing import Signer

    own = Signer.load(__import__("pathlib").Path(signing_identity["LFR_SIGNING_KEY_FILE"]),
                      signing_identity["LFR_SIGNING_KEY_PASSPHRASE"])
    assert "another trusted key" in refused(capsys, "keys", "revoke", own.key_id, "--reason", "test")


def test_read_only_deployment_commands_need_no_signing_key(admin, capsys, monkeypatch):
    monkeypatch.delenv("LFR_SIGNING_KEY_FILE")
    monkeypatch.delenv("LFR_SIGNING_KEY_PASSPHRASE")
    assert lfr(["deployment", "list"]) == 0
    assert "dep-1" in capsys.readouterr().out
    assert lfr(["deployment", "show", "dep-1", "--json"]) == 0
    assert '"state": "draft"' in capsys.readouterr().out
