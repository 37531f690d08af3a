"""The review console against the real broker: decisions, erasure, refusals (HTTP, no browser)."""

from __future__ import annotations

import re

import httpx
import pytest

from services.common.jsonevents import decode_record
from services.governance.evidence.sealing import SealError, associated_data, open_sealed
from services.operations.review.users import UsersFile
from tests.kafka_helpers import TopicReader, wait_until

from .helpers import emit_alert, enrol_reference, review_settings, running_console

PASSWORD = "correct horse battery"


@pytest.fixture
def console_env(broker, tmp_path):
    settings = review_settings(broker.bootstrap_servers, tmp_path / "review", cookie_secure=False)
    users = UsersFile(settings.users_file)
    users.add("op1", PASSWORD, "operator", ("van-1",))
    users.add("op2", PASSWORD, "operator", ("van-2",))
    users.add("sup", PASSWORD, "supervisor")
    users.add("aud", PASSWORD, "auditor")
    with running_console(settings) as console:
        yield settings, console


def sign_in(settings, username: str, password: str = PASSWORD) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=settings.public_url, follow_redirects=False, timeout=20)
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    response = client.post("/login", data={"csrf": token, "username": username, "password": password})
    return client, response


def csrf_of(client: httpx.Client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text).group(1)


def records(bootstrap: str, topic: str) -> list[dict]:
    reader = TopicReader(bootstrap, topic)
    try:
        for _ in range(5):
            reader.poll()
        return [decode_record(r.value(), r.headers()).data for r in reader.records if r.value() is not None]
    finally:
        reader.close()


def test_reject_writes_the_adjudication_and_erases_the_chip(broker, console_env):
    settings, console = console_env
    bootstrap = broker.bootstrap_servers
    enrol_reference(bootstrap, settings, "subj-a")
    alert = emit_alert(bootstrap, settings, subject="subj-a")
    alert_id = alert["alert_id"]
    wait_until(lambda: console.custody.meta(alert_id) is not None and console.board.get(alert_id) is not None
               and "subj-a" in console.board.references, 20, "alert, reference and evidence read")

    client, response = sign_in(settings, "op1")
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    listed = client.get("/api/alerts").json()["alerts"]
    assert [a["alert_id"] for a in listed] == [alert_id] and listed[0]["has_reference"]
    assert client.get(f"/api/alerts/{alert_id}/probe").content[:2] == b"\xff\xd8"
    assert client.get(f"/api/alerts/{alert_id}/reference").content[:2] == b"\xff\xd8"

    token = csrf_of(client)
    decided = client.post(f"/api/alerts/{alert_id}/decision", json={"decision": "rejected"}, headers={"X-CSRF-Token": token})
    assert decided.status_code == 200, decided.text
    assert console.custody.meta(alert_id) is None and client.get(f"/api/alerts/{alert_id}/probe").status_code == 404
    assert client.post(f"/api/alerts/{alert_id}/outcome", json={"outcome": "arrested"}, headers={"X-CSRF-Token": token}).status_code == 409

    [adjudication] = records(bootstrap, settings.adjudications_topic)
    assert (adjudication["decision"], adjudication["actor"], adjudication["role"], adjudication["stage"]) == ("rejected", "op1", "operator", "decision")
    assert adjudication["alert_to_decision_ms"] >= 0 and adjudication["deployment_id"] == "van-1"
    actions = [r["action"] for r in records(bootstrap, settings.audit_topic)]
    assert "alert.decision" in actions and "evidence.erased" in actions

    # The sealed copy on the topic: a tombstone follows it, and once its transit key is destroyed
    # (validity 3 s + grace 3 s here) no key the product holds opens it.
    reader = TopicReader(bootstrap, settings.evidence_topic)
    try:
        wait_until(lambda: any(r.value() is None for r in reader.poll()), 20, "evidence tombstone")
        sealed = next(decode_record(r.value(), r.headers()) for r in reader.records if r.value() is not None).data
    finally:
        reader.close()
    wait_until(lambda: console.sweeper.keys.load(sealed["key_id"]) is None, 20, "transit key destroyed")
    for key in console.sweeper.keys.all():
        with pytest.raises(SealError):
            open_sealed(key.private, bytes(sealed["sealed"]), associated_data(alert_id, sealed["revision"]))
    assert not list((settings.state_dir / "evidence").iterdir())


def test_confirm_then_outcome(broker, console_env):
    settings, console = console_env
    alert = emit_alert(broker.bootstrap_servers, settings, subject="subj-b")
    client, _ = sign_in(settings, "sup")
    wait_until(lambda: console.board.get(alert["alert_id"]) is not None, 20, "alert on the board")
    headers = {"X-CSRF-Token": csrf_of(client)}
    url = f"/api/alerts/{alert['alert_id']}"
    assert client.post(url + "/outcome", json={"outcome": "arrested"}, headers=headers).status_code == 409  # decision first
    assert client.post(url + "/decision", json={"decision": "confirmed"}, headers=headers).status_code == 200
    assert client.post(url + "/decision", json={"decision": "rejected"}, headers=headers).status_code == 409  # final
    assert client.post(url + "/outcome", json={"outcome": "other"}, headers=headers).status_code == 400  # reason needed
    assert client.post(url + "/outcome", json={"outcome": "arrested"}, headers=headers).status_code == 200
    wait_until(lambda: len(records(broker.bootstrap_servers, settings.adjudications_topic)) == 2, 20, "two records")
    stages = [(r["stage"], r["decision"], r.get("outcome"), r["role"]) for r in records(broker.bootstrap_servers, settings.adjudications_topic)]
    assert stages == [("decision", "confirmed", None, "supervisor"), ("outcome", "confirmed", "arrested", "supervisor")]
    assert console.custody.meta(alert["alert_id"]) is not None  # confirmed evidence is kept (until retention)
    report = client.get("/report")  # supervisors read the transparency report in the console
    assert report.status_code == 200 and "transparency report" in report.text and "van-1" in report.text


def test_refusals_write_nothing(broker, console_env):
    settings, console = console_env
    bootstrap = broker.bootstrap_servers
    alert = emit_alert(bootstrap, settings, subject="subj-c", deployment="van-1")
    wait_until(lambda: console.custody.meta(alert["alert_id"]) is not None and console.board.get(alert["alert_id"]) is not None,
               20, "evidence in custody")
    url = f"/api/alerts/{alert['alert_id']}"
    anonymous = httpx.Client(base_url=settings.public_url, follow_redirects=False, timeout=20)
    for path in ("/api/alerts", "/api/stream", url + "/probe", url + "/reference"):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.post(url + "/decision", json={"decision": "rejected"}).status_code == 401
    page = anonymous.get("/")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert anonymous.get("/report").status_code == 303
    assert anonymous.get("/auth/oidc/login").status_code == 404  # OIDC not configured: the users file signs in

    other, _ = sign_in(settings, "op2")  # operator of another deployment
    assert other.get("/api/alerts").json()["alerts"] == []
    assert other.get(url + "/probe").status_code == 403 and other.get(url + "/reference").status_code == 403
    assert other.post(url + "/decision", json={"decision": "rejected"}, headers={"X-CSRF-Token": csrf_of(other)}).status_code == 403

    auditor, _ = sign_in(settings, "aud")  # reports only
    assert auditor.get("/api/alerts").status_code == 403 and auditor.get(url + "/probe").status_code == 403
    assert auditor.get("/report").status_code == 200 and other.get("/report").status_code == 403

    own, _ = sign_in(settings, "op1")
    assert own.post(url + "/decision", json={"decision": "rejected"}).status_code == 403  # no CSRF token
    assert own.post(url + "/decision", json={"decision": "rejected"}, headers={"X-CSRF-Token": "forged"}).status_code == 403

    statuses = [sign_in(settings, "op1", "wrong password!")[1].status_code for _ in range(5)]
    assert statuses == [401] * 5
    assert sign_in(settings, "op1")[1].status_code == 429  # locked, even with the right password

    assert records(bootstrap, settings.adjudications_topic) == []
    assert not [r for r in records(bootstrap, settings.audit_topic) if r["action"].startswith(("alert.", "evidence."))]
    assert console.custody.meta(alert["alert_id"]) is not None  # nothing erased either


def test_report_equals_independent_counts_of_a_seeded_run(broker, console_env, monkeypatch, capsys, tmp_path):
    """Seeded alerts, decisions and face counts on two deployments; `lfr report` against counts made here."""
    import json
    import random
    import time as _time
    from datetime import datetime, timezone

    from services.cli import main
    from tests.kafka_helpers import produce_events

    settings, console = console_env
    bootstrap = broker.bootstrap_servers
    rng = random.Random(5)
    now = int(_time.time() * 1000)
    alerts = [emit_alert(bootstrap, settings, subject=f"s-{i}", deployment=rng.choice(["van-1", "van-2"]), seal=False,
                         captured_at_ms=now - 60_000 + i * 1000) for i in range(8)]
    counts = [{"count_id": f"lfr.frames.v1:0:{i}-{i}:1", "deployment_id": rng.choice(["van-1", "van-2"]), "faces": rng.randint(1, 40),
               "counted_at_ms": now} for i in range(12)]
    produce_events(bootstrap, settings.counts_topic, "lfr.counts.v2", counts + counts[:3])  # 3 redelivered
    client, _ = sign_in(settings, "sup")
    wait_until(lambda: all(console.board.get(a["alert_id"]) for a in alerts), 20, "alerts on the board")
    headers = {"X-CSRF-Token": csrf_of(client)}
    for alert in alerts:
        decision = rng.choice(["confirmed", "rejected", "unable_to_verify", None])
        if decision:
            url = f"/api/alerts/{alert['alert_id']}"
            assert client.post(url + "/decision", json={"decision": decision}, headers=headers).status_code == 200
            if decision != "rejected" and rng.random() < 0.8:
                outcome = rng.choice(["not_stopped", "spoken_to", "arrested", "other"])
                body = {"outcome": outcome, "reason": "crowd too dense" if outcome == "other" else ""}
                assert client.post(url + "/outcome", json=body, headers=headers).status_code == 200

    decided = {}
    for record in records(bootstrap, settings.adjudications_topic):
        decided.setdefault(record["alert_id"], {}).update({k: record[k] for k in ("decision", "outcome") if k in record})
    faces = {}
    for count in {c["count_id"]: c for c in records(bootstrap, settings.counts_topic)}.values():
        faces[count["deployment_id"]] = faces.get(count["deployment_id"], 0) + count["faces"]

    def expected(deployments):
        ids = {a["alert_id"] for a in records(bootstrap, settings.alerts_topic) if a["deployment_id"] in deployments}
        of = lambda key, *values: sum(1 for a in ids if decided.get(a, {}).get(key) in values)  # noqa: E731
        return {"faces": sum(faces.get(d, 0) for d in deployments), "alerts": len(ids), "confirmed": of("decision", "confirmed"),
                "false_alerts": of("decision", "rejected"), "engagements": of("outcome", "spoken_to", "arrested", "other"),
                "arrests": of("outcome", "arrested")}

    for field in ("alerts_topic", "adjudications_topic", "counts_topic", "watchlist_topic", "deployments_topic"):
        monkeypatch.setenv(f"LFR_{field.upper()}", getattr(settings, field))
    today = datetime.fromtimestamp(now / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
    out = tmp_path / "reports"
    for args, deployments in ((["--deployment", "van-1"], ["van-1"]), (["--from", today, "--to", today], ["van-1", "van-2"])):
        capsys.readouterr()
        assert main(["report", *args, "--json", "--out", str(out), "--bootstrap-servers", bootstrap]) == 0
        assert json.loads(capsys.readouterr().out) == expected(deployments), args
    full = json.loads((out / f"report-{today}-{today}.json").read_text())
    assert {row["deployment_id"] for row in full["deployments"]} == {"van-1", "van-2"}
    html = (out / f"report-{today}-{today}.html").read_text()
    assert html.count("<tr>") == 4  # head, two deployments, total
    # The shape forces publish: per deployment and in total, as JSON and as the HTML table's columns.
    figures = {"faces", "alerts", "confirmed", "false_alerts", "false_alert_rate_per_1000_faces", "false_alert_rate_per_alert",
               "engagements", "arrests", "median_alert_to_decision_s"}
    for row in full["deployments"]:
        assert figures | {"date", "place", "duration_h", "authorising_rank", "watchlist_size"} <= set(row)
    assert figures | {"deployments"} <= set(full["totals"]) and full["totals"]["deployments"] == 2
    for title in ("Date", "Place", "Duration (h)", "Authorised by (rank)", "Watchlist size", "Faces processed", "Alerts", "Confirmed",
                  "False alerts", "False alerts per 1,000 faces", "False alerts per alert", "Engagements", "Arrests",
                  "Median alert-to-decision (s)", "Total"):
        assert f">{title}</th>" in html, title
