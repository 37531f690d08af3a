"""The console per force (issue #24), through the real console server on the test broker: users
belong to a force; a console serves its own force (LFR_FORCE), an officer of another force is
refused, another force's records never reach its board, and a national user sees counts by
force only, never an alert, image, subject or place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from services.common.settings import ReviewSettings
from services.common.signing import Keyring, Signer
from services.governance.forces.naming import force_topic
from services.operations.review.users import UsersFile
from tests.forces.test_national_report import two_forces  # noqa: F401 - fixture
from tests.forces.test_registry import forces_topic  # noqa: F401 - fixture
from tests.kafka_helpers import TopicReader, create_topics, unique, wait_until

from .helpers import TOPIC_FIELDS, emit_alert, enrol_reference, review_settings, running_console
from .test_console import PASSWORD, records, sign_in


def force_officer(signing_identity, monkeypatch, tmp_path, force: str) -> None:
    """A copy of the run's keyring with an officer's key registered for ``force`` (by the run's key
    administrator); the console and the enrolment below sign with it."""
    ring_path = tmp_path / "keyring.json"
    shutil.copy(signing_identity["LFR_KEYRING_FILE"], ring_path)
    passphrase = signing_identity["LFR_SIGNING_KEY_PASSPHRASE"]
    officer = Signer.generate(f"PC 1 of {force}")
    officer.save(tmp_path / "officer.key.json", passphrase)
    ring = Keyring.load(ring_path)
    ring.add(officer, 0)
    ring.register(officer.key_id, "constable", "operator", force, Signer.load(Path(signing_identity["LFR_SIGNING_KEY_FILE"]), passphrase))
    ring.save()
    monkeypatch.setenv("LFR_KEYRING_FILE", str(ring_path))
    monkeypatch.setenv("LFR_SIGNING_KEY_FILE", str(tmp_path / "officer.key.json"))


def test_each_force_sees_only_its_own_and_the_national_role_only_counts(broker, two_forces, signing_identity, monkeypatch,  # noqa: F811
                                                                        tmp_path):
    (a, b), secrets = two_forces
    bootstrap = broker.bootstrap_servers
    force_officer(signing_identity, monkeypatch, tmp_path, a)
    dlq = unique("lfr.dlq.v1")
    create_topics(bootstrap, dlq, partitions=1)
    own = {field: force_topic(a, ReviewSettings.model_fields[field].default) for field in TOPIC_FIELDS}
    settings = review_settings(bootstrap, tmp_path / "review", cookie_secure=False, force=a, dlq_topic=dlq, **own)
    users = UsersFile(settings.users_file)
    users.add("a_sup", PASSWORD, "supervisor", force=a)
    users.add("b_op", PASSWORD, "operator", (f"{b}-van-1",), force=b)
    users.add("b_sup", PASSWORD, "supervisor", force=b)
    users.add("b_aud", PASSWORD, "auditor", force=b)
    users.add("nat", PASSWORD, "national")
    with running_console(settings) as console:
        enrol_reference(bootstrap, settings, "subj-a", deployment=f"{a}-van-1")
        mine = emit_alert(bootstrap, settings, subject="subj-a", deployment=f"{a}-van-1", force=a)
        # Attack: a record written with force B's name onto force A's topics.
        foreign = emit_alert(bootstrap, settings, subject="subj-b", deployment=f"{b}-van-1", force=b)
        wait_until(lambda: console.custody.meta(mine["alert_id"]) is not None and console.board.get(mine["alert_id"]) is not None
                   and "subj-a" in console.board.references, 30, "force A's alert, evidence and reference")
        dead = TopicReader(bootstrap, dlq)
        try:
            letters = dead.read_until(2)  # B's alert and B's evidence
        finally:
            dead.close()
        assert console.board.get(foreign["alert_id"]) is None and console.custody.meta(foreign["alert_id"]) is None
        headers = [dict((k, v.decode()) for k, v in letter.headers()) for letter in letters]
        assert {h["lfr_dlq_reason"] for h in headers} == {"force_mismatch"}
        assert {h["lfr_dlq_payload"] for h in headers} == {"withheld"} and all(letter.value() is None for letter in letters)
        refused = [r for r in records(bootstrap, settings.audit_topic) if r["action"] == "force.refused"]
        assert len(refused) == 2 and {r["force"] for r in refused} == {a}

        url = f"/api/alerts/{mine['alert_id']}"
        for name in ("b_op", "b_sup", "b_aud"):  # officers of force B: not on force A's console
            client, response = sign_in(settings, name)
            assert response.status_code == 403, name
            assert "lfr_session" not in client.cookies
            for path in ("/api/alerts", "/api/stream", url + "/probe", url + "/reference", "/report"):
                assert client.get(path).status_code in (401, 303), (name, path)

        supervisor, response = sign_in(settings, "a_sup")
        assert response.status_code == 303
        listed = supervisor.get("/api/alerts").json()["alerts"]
        shown = {alert["alert_id"] for alert in listed}
        assert mine["alert_id"] in shown and foreign["alert_id"] not in shown and len(shown) == 6  # with the 5 seeded of force A
        assert supervisor.get(url + "/probe").status_code == 200 and supervisor.get(url + "/reference").status_code == 200
        assert supervisor.get(f"/api/alerts/{foreign['alert_id']}/probe").status_code == 404
        assert supervisor.get("/api/national").status_code == 403

        national, response = sign_in(settings, "nat")
        assert response.status_code == 303
        for path in ("/api/alerts", "/api/stream", "/report"):
            assert national.get(path).status_code == 403, path
        for path in (url + "/probe", url + "/reference"):  # an image: as if it did not exist
            assert national.get(path).status_code == 404, path
        decision = national.post(url + "/decision", json={"decision": "confirmed"},
                                 headers={"X-CSRF-Token": "x"})
        assert decision.status_code == 403
        assert national.get("/").headers["location"] == "/api/national"
        answer = national.get("/api/national", timeout=60)
        assert answer.status_code == 200
        result = answer.json()
        assert set(result) == {"forces", "totals"}
        rows = {row["force"]: row for row in result["forces"]}
        assert rows[b] == {"force": b, "deployments": 1, "faces": 7, "alerts": 3, "false_alerts": 1, "arrests": 2}
        text = json.dumps(result)
        assert not [s for s in secrets | {"subj-a", "subj-b", mine["alert_id"]} if s in text]


def test_the_oidc_force_claim_names_the_users_force():
    from services.operations.review.oidc import user_from_claims

    def user(**claims):
        return user_from_claims({"preferred_username": "pc1", **claims}, "lfr_roles", "lfr_deployments", "lfr_force")

    assert user(lfr_roles=["supervisor"], lfr_force="gmp").force == "gmp"
    assert user(lfr_roles=["supervisor"]).force == "default"  # no claim: force default's (a single-force installation)
    assert user(lfr_roles=["supervisor"], lfr_force="Greater Manchester") is None  # no force id: no session
    assert user(lfr_roles=["supervisor"], lfr_force=["gmp", "wyp"]) is None
    assert user(lfr_roles=["national"]).role == "national"
