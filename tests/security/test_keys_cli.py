"""`lfr keys create|list|revoke`: encrypted private keys, a keyring, audited revocations."""

from __future__ import annotations

import json

from services.cli import main as lfr
from services.common.jsonevents import decode_record
from services.common.signing import Keyring, Signer
from tests.kafka_helpers import create_topics, unique


def test_create_list_revoke(broker, kafka_env, monkeypatch, reader, tmp_path, capsys):
    audit = unique("audit")
    create_topics(broker.bootstrap_servers, audit, partitions=1)
    monkeypatch.setenv("LFR_AUDIT_TOPIC", audit)
    ring = tmp_path / "keyring.json"
    monkeypatch.setenv("LFR_KEYRING_FILE", str(ring))
    monkeypatch.setenv("LFR_SIGNING_KEY_PASSPHRASE", "a long passphrase")
    capsys.readouterr()
    created = []
    for owner in ("Insp 5 Authoriser", "PC 1234 Operator"):
        assert lfr(["keys", "create", "--owner", owner, "--out", str(tmp_path / f"{len(created)}.key.json")]) == 0
        created.append(json.loads(capsys.readouterr().out))
    assert "PRIVATE KEY" not in ring.read_text() and "ENCRYPTED PRIVATE KEY" in (tmp_path / "0.key.json").read_text()
    assert Signer.load(tmp_path / "1.key.json", "a long passphrase").owner == "PC 1234 Operator"

    assert lfr(["keys", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [k["owner"] for k in listed] == ["Insp 5 Authoriser", "PC 1234 Operator"] and all(k["revoked_at_ms"] is None for k in listed)

    # The inspector revokes the constable's key; a key cannot sign its own revocation.
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(tmp_path / "1.key.json"))
    assert lfr(["keys", "revoke", created[1]["key_id"], "--reason", "laptop lost"]) == 3  # refused on purpose
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(tmp_path / "0.key.json"))
    assert lfr(["keys", "revoke", created[1]["key_id"], "--reason", "laptop lost"]) == 0
    revoked = Keyring.load(ring).get(created[1]["key_id"])
    assert revoked.revoked_at_ms is not None and revoked.revoked_reason == "laptop lost"
    (record,) = [decode_record(r.value(), r.headers()).data for r in reader(audit).read_until(1)]
    assert (record["action"], record["actor"], record["details"]["key_id"]) == ("keys.revoke", "Insp 5 Authoriser", created[1]["key_id"])
