"""`lfr report --national`: per registered force, the figures forces publish, from the topics
under each force's prefix; counts only (never a deployment, place, subject or camera)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from services.cli import main
from services.common import cli_support
from services.common.envelope import encode
from services.governance.deployments.record import SCHEMA as DEPLOYMENT_SCHEMA
from services.pipeline.dispatch.policy import decide
from services.operations.report.national import NATIONAL_KEYS, national_report
from tests.deployment_helpers import active_deployment
from tests.dispatch.helpers import match
from tests.forces.test_registry import forces_topic  # noqa: F401 - fixture
from tests.kafka_helpers import produce, produce_events

PLACE = "Secret Street, Bedford"


def seed(bootstrap: str, force: str, *, alerts: int, rejected: int, arrested: int, faces: list[int]) -> set[str]:
    """One deployment of ``force`` on its own topics; returns every identifier that must not leave the force."""
    now = int(time.time() * 1000)
    deployment = f"{force}-van-1"
    record = active_deployment(deployment, ["cam-secret"])
    record = type(record)(**{**record.__dict__, "place": {"name": PLACE, "point": {"lat": 52.1, "lon": -0.4}, "radius_m": 50.0}})
    produce(bootstrap, f"lfr.{force}.deployments.v1", [encode(DEPLOYMENT_SCHEMA, record.to_data())], keys=[deployment.encode()])
    secrets = {deployment, PLACE, "cam-secret"}
    bodies, decisions = [], []
    for i in range(alerts):
        subject = f"subject-{force}-{i}"
        _, alert = decide(None, match(subject=subject, camera="cam-secret", deployment=deployment, captured_at_ms=now - 1000 * i), 60_000, now)
        bodies.append({**alert.data, "force": force})  # as dispatch of the force stamps it
        secrets |= {subject, alert.alert_id, alert.data["reference"]}
        decision = "rejected" if i < rejected else "confirmed"
        base = {"alert_id": alert.alert_id, "subject_id": subject, "deployment_id": deployment, "camera_id": "cam-secret",
                "actor": "pc1", "role": "operator", "force": force, "alert_at_ms": now - 1000 * i, "decided_at_ms": now, "alert_to_decision_ms": 1000 * i}
        decisions.append({**base, "stage": "decision", "decision": decision})
        if rejected <= i < rejected + arrested:
            decisions.append({**base, "stage": "outcome", "decision": decision, "outcome": "arrested", "decided_at_ms": now + 1})
    # Alerts, decisions and counts as the services write them: plain JSON CloudEvents (lfr.alerts.v3 etc.).
    produce_events(bootstrap, f"lfr.{force}.alerts.v3", "lfr.alerts.v3", bodies)
    produce_events(bootstrap, f"lfr.{force}.adjudications.v3", "lfr.adjudications.v3", decisions)
    counts = [{"count_id": f"lfr.{force}.frames.v1:0:{i}-{i}:1", "deployment_id": deployment, "faces": n, "counted_at_ms": now, "force": force}
              for i, n in enumerate(faces)]
    produce_events(bootstrap, f"lfr.{force}.counts.v2", "lfr.counts.v2", counts + counts[:1])  # one redelivered: counted once
    return secrets


@pytest.fixture
def two_forces(forces_topic, broker, capsys, tmp_path):  # noqa: F811
    ids = [f"n{uuid.uuid4().hex[:6]}", f"m{uuid.uuid4().hex[:6]}"]
    for force in ids:
        assert main(["forces", "add", "--id", force, "--name", f"Force {force}", "--controller", f"dpo@{force}.example"]) == 0
        assert main(["topics", "apply", "--force", force]) == 0, capsys.readouterr().err
    secrets = seed(broker.bootstrap_servers, ids[0], alerts=5, rejected=2, arrested=1, faces=[40, 2])
    secrets |= seed(broker.bootstrap_servers, ids[1], alerts=3, rejected=1, arrested=2, faces=[7])
    capsys.readouterr()
    return ids, secrets


def test_national_figures_per_force_and_totals_counts_only(two_forces, capsys, tmp_path):
    (a, b), secrets = two_forces
    out = tmp_path / "reports"
    assert main(["report", "--national", "--json", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(printed)
    assert set(result) == {"forces", "totals"}
    rows = {row["force"]: row for row in result["forces"]}
    assert {"default", a, b} <= set(rows)
    assert all(set(row) == {"force", *NATIONAL_KEYS} for row in rows.values())
    assert rows[a] == {"force": a, "deployments": 1, "faces": 42, "alerts": 5, "false_alerts": 2, "arrests": 1}
    assert rows[b] == {"force": b, "deployments": 1, "faces": 7, "alerts": 3, "false_alerts": 1, "arrests": 2}
    assert result["totals"] == {key: sum(row[key] for row in rows.values()) for key in NATIONAL_KEYS}
    (written,) = out.glob("report-national-*.json")
    for text in (printed, written.read_text()):
        assert not [s for s in secrets if s in text], "a national report shows nothing finer than the force"
    assert set(json.loads(written.read_text())) == {"generated_at", "period", "forces", "totals"}


def test_a_forces_own_report_reads_only_its_topics(two_forces, capsys, tmp_path):
    (a, b), _ = two_forces
    assert main(["report", "--force", b, "--from", "2000-01-01", "--to", "2100-01-01", "--json", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"faces": 7, "alerts": 3, "confirmed": 2, "false_alerts": 1, "engagements": 2, "arrests": 2}


def test_records_named_for_another_force_on_a_forces_topics_are_not_counted(two_forces, broker, capsys, tmp_path):
    """Attack (#24): records written with force A's name onto force B's topics (and unnamed ones,
    which are force default's) change nothing in B's report, and each is counted as refused."""
    from services.governance.forces.place import FORCE_MISMATCHES

    (a, b), _ = two_forces
    now = int(time.time() * 1000)
    _, alert = decide(None, match(subject="intruder", camera="cam-x", deployment=f"{a}-van-1", captured_at_ms=now), 60_000, now)
    before = FORCE_MISMATCHES.labels("report", f"lfr.{b}.alerts.v3", "topic")._value.get()
    produce_events(broker.bootstrap_servers, f"lfr.{b}.alerts.v3", "lfr.alerts.v3", [{**alert.data, "force": a}, alert.data])
    produce_events(broker.bootstrap_servers, f"lfr.{b}.counts.v2", "lfr.counts.v2",
                   [{"count_id": "x:0:0-0:1", "deployment_id": f"{b}-van-1", "faces": 1000, "counted_at_ms": now, "force": a}])
    assert main(["report", "--force", b, "--from", "2000-01-01", "--to", "2100-01-01", "--json", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"faces": 7, "alerts": 3, "confirmed": 2, "false_alerts": 1, "engagements": 2, "arrests": 2}
    assert FORCE_MISMATCHES.labels("report", f"lfr.{b}.alerts.v3", "topic")._value.get() == before + 2


@pytest.mark.parametrize("argv, code", [
    (["--national", "--deployment", "x"], cli_support.EXIT_USAGE),
    (["--national", "--force", "gmp"], cli_support.EXIT_USAGE),
    (["--force", "Not A Force", "--deployment", "x"], cli_support.EXIT_USAGE),
    (["--force", "kent", "--deployment", "x"], cli_support.EXIT_REFUSED),
])
def test_bad_combinations_are_refused_in_one_line(forces_topic, argv, code, capsys, tmp_path):  # noqa: F811
    assert main(["report", *argv, "--out", str(tmp_path)]) == code
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_roll_up_is_the_sum_of_each_forces_totals():
    report = lambda **t: {"totals": {"confirmed": 9, "faces": 0, "alerts": 0, "false_alerts": 0, "arrests": 0, "deployments": 0, **t}}  # noqa: E731
    rolled = national_report({"gmp": report(faces=10, alerts=2), "wyp": report(faces=5, arrests=1)}, {"from": None, "to": None}, None)
    assert rolled["forces"][0] == {"force": "gmp", "deployments": 0, "faces": 10, "alerts": 2, "false_alerts": 0, "arrests": 0}
    assert rolled["totals"] == {"deployments": 0, "faces": 15, "alerts": 2, "false_alerts": 0, "arrests": 1}
