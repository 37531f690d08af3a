"""The audit proves order rather than trusting timestamps (issue #23): a key revoked at chain
position N invalidates every record it signs after N, whatever ``at_ms`` the record claims, and
`lfr audit verify` names such a record by its offset."""

from __future__ import annotations

import time

from services.governance.audit.writer import AuditWriter
from services.cli import main as lfr
from services.common.settings import AuditSettings, load_settings
from services.common.signing import Keyring, Signer
from tests.kafka_helpers import create_topics, unique


def test_a_record_signed_after_the_revocation_fails_whatever_its_time(broker, kafka_env, monkeypatch, capsys, tmp_path):
    lost, admin = Signer.generate("PC 9 Lost Laptop"), Signer.generate("Insp 1 Admin")
    ring = Keyring(tmp_path / "ring.json")
    ring.add(lost, 0)
    ring.add(admin, 0)
    ring.save()
    monkeypatch.setenv("LFR_KEYRING_FILE", str(ring.path))
    topic = unique("audit")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    settings = load_settings(AuditSettings)
    before = int(time.time() * 1000)
    thief = AuditWriter(settings, topic, lost, "watchlist")
    for i in range(3):
        thief.write("watchlist.add", f"s{i}", {"n": i})  # genuine, before the laptop was lost
    revoker = AuditWriter(settings, topic, admin, "keys")
    revoker.write("keys.revoke", None, {"key_id": lost.key_id, "owner": lost.owner, "reason": "lost laptop"})  # offset 3
    revoker.close()
    ring.revoke(lost.key_id, "lost laptop", int(time.time() * 1000))
    ring.save()
    assert lfr(["audit", "verify", "--topic", topic]) == 0  # what the key signed before its revocation stands
    capsys.readouterr()
    # Appended after the revocation, but dated before it: the chain position decides.
    thief.write("watchlist.remove", "s1", {"n": 9}, at_ms=before)
    thief.close()
    assert lfr(["audit", "verify", "--topic", topic]) == 1
    out = capsys.readouterr().out
    assert f"FAILED at offset 4 (seq 4): inserted: signed by key {lost.key_id} after its revocation at offset 3" in out


def test_audit_show_shows_only_what_verifies(broker, kafka_env, monkeypatch, capsys, tmp_path):
    """`lfr audit show` reads the audit through the chain check: a record a stranger appended is not shown."""
    from services.common.envelope import encode
    from services.governance.audit.chain import seal
    from tests.kafka_helpers import produce

    writer_key, stranger = Signer.generate("Sgt 7 Writer"), Signer.generate("Sgt 7 Writer")
    ring = Keyring(tmp_path / "ring.json")
    ring.add(writer_key, 0)
    ring.save()
    monkeypatch.setenv("LFR_KEYRING_FILE", str(ring.path))
    topic = unique("audit")
    create_topics(broker.bootstrap_servers, topic, partitions=1)
    writer = AuditWriter(load_settings(AuditSettings), topic, writer_key, "watchlist")
    _record, head = writer.write("watchlist.add", "s0", {"n": 0})
    writer.close()
    forged = seal({"action": "watchlist.remove", "at_ms": 1, "service": "watchlist", "subject_id": "s0"}, stranger, 1, head)
    produce(broker.bootstrap_servers, topic, [encode("lfr.audit.v2", forged)])
    assert lfr(["audit", "show", "--topic", topic, "--json"]) == 1
    captured = capsys.readouterr()
    assert [line.count('"watchlist.add"') for line in captured.out.splitlines()] == [1]
    assert "records from offset 1 not shown" in captured.err
