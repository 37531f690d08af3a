"""`lfr forces add|list|show` against the embedded broker: the seven forces of the national
roll-out plus `default` registered on one platform, each change audited; bad input refused."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from services.cli import main
from services.common import cli_support
from services.common.jsonevents import decode_record
from services.common.topic_reader import read_to_end
from services.governance.forces.registry import KNOWN_FORCES

SEVEN = {"gmp": "Greater Manchester Police", "wyp": "West Yorkshire Police", "beds": "Bedfordshire Police",
         "surrey": "Surrey Police", "sussex": "Sussex Police", "tvp": "Thames Valley Police",
         "hampshire": "Hampshire and Isle of Wight Constabulary"}


@pytest.fixture
def forces_topic(broker, kafka_env, monkeypatch) -> str:
    """A fresh registry topic (compacted, like lfr.forces.v1) for this test."""
    topic = f"lfr.forcestest{uuid.uuid4().hex[:8]}.v1"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})]).values():
        future.result()
    monkeypatch.setenv("LFR_FORCES_TOPIC", topic)
    monkeypatch.setenv("LFR_FORCES_READ_TIMEOUT_S", "20")
    return topic


def listed(capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["forces", "list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_seven_forces_and_default_on_one_platform(forces_topic, broker, capsys):
    assert KNOWN_FORCES == SEVEN
    assert [(f["id"], f["name"]) for f in listed(capsys)] == [("default", "Default force (this installation before forces)")]
    for force_id in SEVEN:
        assert main(["forces", "add", "--id", force_id, "--controller", f"dpo@{force_id}.police.uk", "--actor", "platform admin"]) == 0, \
            capsys.readouterr().err
    rows = listed(capsys)
    assert all({"id", "name"} <= set(row) for row in rows)
    assert {row["id"]: row["name"] for row in rows} == {"default": rows[0]["name"], **SEVEN}
    assert main(["forces", "show", "tvp"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["controller"] == {"email": "dpo@tvp.police.uk"} and record["keys"] == []
    assert record["roles"] == {"operator": "tvp:operator", "supervisor": "tvp:supervisor", "auditor": "tvp:auditor", "admin": "tvp:admin"}
    # every registration is on the audit chain, before its record
    audit = [decode_record(r.value(), r.headers()).data for r in read_to_end({"bootstrap.servers": broker.bootstrap_servers}, "lfr.audit.v2",
                                                         group_id="t", timeout_s=20)]
    assert {a["subject_id"] for a in audit if a["action"] == "force.add"} >= set(SEVEN)


def test_a_named_force_with_roles_of_its_own(forces_topic, capsys):
    assert main(["forces", "add", "--id", "thames-valley", "--name", "Thames Valley Police", "--controller", "dpo@tvp.example",
                 "--role", "supervisor=tvp-lfr-supervisors"]) == 0
    capsys.readouterr()
    assert main(["forces", "show", "thames-valley"]) == 0
    assert json.loads(capsys.readouterr().out)["roles"]["supervisor"] == "tvp-lfr-supervisors"


@pytest.mark.parametrize("argv, code, words", [
    (["--id", "Greater Manchester", "--name", "GMP", "--controller", "dpo@gmp.example"], cli_support.EXIT_USAGE, "lowercase"),
    (["--id", "frames", "--name", "F", "--controller", "dpo@f.example"], cli_support.EXIT_USAGE, "platform topic"),
    (["--id", "national", "--name", "N", "--controller", "dpo@n.example"], cli_support.EXIT_USAGE, "reserved"),
    (["--id", "kent", "--controller", "dpo@kent.example"], cli_support.EXIT_REFUSED, "--name"),
    (["--id", "kent", "--name", "Kent Police", "--controller", "not an email"], cli_support.EXIT_REFUSED, "--controller"),
    (["--id", "kent", "--name", "Kent Police", "--controller", "dpo@kent.example", "--role", "national=x"], cli_support.EXIT_REFUSED,
     "unknown roles"),
    (["--id", "kent", "--name", "Kent Police", "--controller", "dpo@kent.example", "--role", "supervisor"], cli_support.EXIT_USAGE,
     "ROLE=GROUP"),
])
def test_bad_input_ends_in_one_line_and_writes_nothing(forces_topic, capsys, argv, code, words):
    assert main(["forces", "add", *argv]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and words in err, err
    assert [f["id"] for f in listed(capsys)] == ["default"]


def test_registering_an_id_twice_is_refused(forces_topic, capsys):
    assert main(["forces", "add", "--id", "gmp", "--controller", "dpo@gmp.example"]) == 0
    assert main(["forces", "add", "--id", "gmp", "--controller", "other@gmp.example"]) == cli_support.EXIT_REFUSED
    assert "already registered" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["forces", "show", "gmp"]) == 0 and json.loads(capsys.readouterr().out)["controller"]["email"] == "dpo@gmp.example"
    assert main(["forces", "show", "kent"]) == 1


def test_topics_apply_creates_a_registered_forces_topics_and_refuses_others(forces_topic, broker, capsys):
    assert main(["forces", "add", "--id", "surrey", "--controller", "dpo@surrey.example"]) == 0
    capsys.readouterr()
    assert main(["topics", "apply", "--force", "surrey"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    topics = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10).topics
    assert {"lfr.surrey.alerts.v3", "lfr.surrey.watchlist.v1", "lfr.surrey.dispatch-open-alerts-changelog"} <= set(topics)
    assert "lfr.surrey.forces.v1" not in topics and "lfr.surrey.forces.v1" not in out  # the registry is the platform's
    assert main(["topics", "apply", "--force", "sussex"]) == cli_support.EXIT_REFUSED
    assert "not registered" in capsys.readouterr().err
    assert main(["topics", "apply", "--force", "Sussex Police"]) == cli_support.EXIT_USAGE
    assert not any(t.startswith("lfr.sussex.") for t in AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10).topics)


def test_a_registry_record_under_another_forces_key_or_invalid_is_skipped(forces_topic, broker, capsys):
    """A record keyed gmp whose body names wyp (one force's name written as another's) is not a
    registration of either; nor is a record that does not validate."""
    from services.common.envelope import encode
    from services.governance.forces.registry import new_force
    from tests.kafka_helpers import produce

    wyp = new_force("wyp", None, "dpo@wyp.example", actor="x", now_ms=1)
    produce(broker.bootstrap_servers, forces_topic, [encode("lfr.forces.v1", wyp.to_data()), b"not an envelope"], keys=[b"gmp", b"tvp"])
    assert [f["id"] for f in listed(capsys)] == ["default"]


def test_an_unsigned_or_unaudited_registration_is_not_a_force(forces_topic, broker, capsys):
    """Written straight onto the registry topic by anyone with broker access (the embedded broker
    has no authentication): unsigned, or signed by a trusted key with a made-up audit hash."""
    from services.common.envelope import encode
    from services.governance.forces.registry import new_force
    from tests.deployment_helpers import session_signers
    from tests.kafka_helpers import produce

    rogue = encode("lfr.forces.v1", new_force("rogue", "Rogue Police", "dpo@rogue.example", actor="x", now_ms=1).to_data())
    made_up = encode("lfr.forces.v1", new_force("madeup", "Made Up Police", "dpo@madeup.example", actor="x", now_ms=1).to_data())
    operator, _ = session_signers()
    produce(broker.bootstrap_servers, forces_topic, [rogue], keys=[b"rogue"])
    produce(broker.bootstrap_servers, forces_topic, [made_up], keys=[b"madeup"],
            headers=[operator.record_headers(forces_topic, b"madeup", made_up, audit_hash="ab" * 32)])
    assert main(["forces", "add", "--id", "tvp", "--controller", "dpo@tvp.example"]) == 0
    assert [f["id"] for f in listed(capsys)] == ["default", "tvp"]
