"""Isolation the broker enforces: the chart's per-force Strimzi KafkaUsers (from access.toml)
read as a broker would (tests/security/kafka_acl.py). Nothing a force's principal can read,
write, create or describe of another force's; each holds on its own what the table says."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml

from services.common.access import load_access, principals_for
from services.common.topics import load_topic_specs
from services.governance.forces.naming import force_group, force_topic
from services.governance.forces.registry import KNOWN_FORCES
from tests.conftest import PROJECT_ROOT
from tests.security.kafka_acl import Authorizer

FORCES = ["default", *KNOWN_FORCES]
SPECS = load_topic_specs()
ACCESS = load_access()
OPERATIONS = ("Read", "Write", "Create", "Delete", "Alter", "AlterConfigs", "Describe", "DescribeConfigs")
VALUES = {"kafkaUsers": {"enabled": True}, "forces": [{"id": f} for f in KNOWN_FORCES] + [{"id": "tvp", "quotas": {"producerByteRate": 2048}}]}


@pytest.fixture(scope="module")
def users() -> dict[str, dict]:
    from tests.deploy.helpers import by_kind, render

    return by_kind(render(VALUES), "KafkaUser")


def own_topics(force: str) -> list[str]:
    return [force_topic(force, spec.name) for spec in SPECS if not spec.platform]


def principals_of(force: str) -> list[str]:
    return [f"openlfr-{name}" if force == "default" else f"openlfr-{force}-{name}" for name, p in ACCESS.items() if p.scope == "force"]


def test_the_chart_renders_every_principal_of_every_force_once(users):
    expected = {p.user for p in principals_for(FORCES).values()}
    assert set(users) == expected
    assert len(expected) == 1 + 11 * 8  # the platform's, and eleven per force (default included)
    for name, doc in users.items():
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
        assert doc["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert all(a.get("type", "allow") == "allow" and "All" not in a["operations"] for a in doc["spec"]["authorization"]["acls"])


def test_no_principal_of_one_force_holds_anything_of_anothers(users):
    broker = Authorizer(users.values())
    for owner, other in itertools.permutations(FORCES, 2):
        topics = own_topics(owner)
        groups = [force_group(owner, g) for p in ACCESS.values() for g in p.groups]
        for user in principals_of(other):
            for topic, operation in itertools.product(topics, OPERATIONS):
                assert not broker.allowed(user, "topic", topic, operation), (user, topic, operation)
            for group in groups:
                assert not broker.allowed(user, "group", group, "Read"), (user, group)


def test_each_force_holds_on_its_own_topics_what_the_table_says_and_no_more(users):
    broker = Authorizer(users.values())
    for force in FORCES:
        for name, row in ACCESS.items():
            if row.scope != "force":
                continue
            user = f"openlfr-{name}" if force == "default" else f"openlfr-{force}-{name}"
            for spec in SPECS:
                topic = force_topic(force, spec.name) if not spec.platform else spec.name
                for operation in ("Read", "Write"):
                    granted = row.may(spec.name, operation) and not (spec.platform and force != "default" and operation == "Write")
                    assert broker.allowed(user, "topic", topic, operation) == granted, (user, topic, operation)
            for group, operations in row.groups.items():
                for operation in operations:  # e.g. ingest only describes detect's group (its lag: back-pressure)
                    assert broker.allowed(user, "group", force_group(force, group), operation), (user, group, operation)
        # a new version of a force's topic needs no new grant; the force's watchlist is its admin's alone
        assert broker.allowed(f"openlfr-{force}-review" if force != "default" else "openlfr-review", "topic",
                              force_topic(force, "lfr.alerts.v3"), "Read")
        if force != "default":
            assert broker.allowed(f"openlfr-{force}-review", "topic", f"lfr.{force}.alerts.v4", "Read")
            writers = {u for u in users if broker.allowed(u, "topic", f"lfr.{force}.watchlist.v1", "Write")}
            assert writers == {f"openlfr-{force}-admin"}


def test_no_force_writes_the_registry_and_the_platform_only_administers_topics(users):
    broker = Authorizer(users.values())
    writers = {u for u in users if broker.allowed(u, "topic", "lfr.forces.v1", "Write")}
    assert writers == {"openlfr-admin"}  # the platform's administrators (force default's admin row), no force's
    for topic in own_topics("gmp"):
        assert broker.allowed("openlfr-platform", "topic", topic, "Create")
        assert not broker.allowed("openlfr-platform", "topic", topic, "Read")
        assert not broker.allowed("openlfr-platform", "topic", topic, "Write")


def test_quotas_per_principal_with_a_forces_own_over_the_default(users):
    assert users["openlfr-gmp-detect"]["spec"]["quotas"] == {"producerByteRate": 10485760, "consumerByteRate": 20971520, "requestPercentage": 25}
    assert users["openlfr-tvp-detect"]["spec"]["quotas"]["producerByteRate"] == 2048
    assert users["openlfr-tvp-detect"]["spec"]["quotas"]["consumerByteRate"] == 20971520
    assert all("quotas" in doc["spec"] for doc in users.values())


def test_force_defaults_users_are_the_prod_overlays(users):
    """The chart and k8s/overlays/prod/kafka-users.yaml come from the same table."""
    overlay = {d["metadata"]["name"]: d for d in yaml.safe_load_all((PROJECT_ROOT / "k8s/overlays/prod/kafka-users.yaml").read_text()) if d}
    for name, doc in overlay.items():
        assert users[name]["spec"]["authorization"] == doc["spec"]["authorization"], name


@pytest.mark.parametrize("forces", [[{"id": "Greater Manchester"}], [{"id": "gmp"}, {"id": "gmp"}], [{"id": "gmp", "quotas": {"requestPercentage": 0}}]])
def test_the_values_schema_refuses_bad_forces(forces):
    from tests.deploy.helpers import helm, render

    with pytest.raises(helm().errors.HelmValuesError):
        render({"kafkaUsers": {"enabled": True}, "forces": forces})


def test_the_evaluator_decides_as_a_broker():
    def user(*acls):
        return {"kind": "KafkaUser", "metadata": {"name": "u"}, "spec": {"authorization": {"acls": list(acls)}}}

    def acl(name, ops, pattern="literal", kind="topic", effect="allow"):
        return {"resource": {"type": kind, "name": name, "patternType": pattern}, "operations": ops, "type": effect}

    broker = Authorizer([user(acl("lfr.gm", ["Read"], "prefix"))])  # a prefix without its dot...
    assert broker.allowed("u", "topic", "lfr.gmp.alerts.v2", "Read")  # ...covers another force: why ids end in "."
    assert broker.allowed("u", "topic", "lfr.gm.alerts.v2", "Describe") and not broker.allowed("u", "topic", "lfr.gm.alerts.v2", "Write")
    assert not broker.allowed("nobody", "topic", "lfr.gm.alerts.v2", "Read")
    broker = Authorizer([user(acl("*", ["All"]), acl("lfr.x.alerts.v1", ["Read"], effect="deny"))])
    assert broker.allowed("u", "topic", "lfr.y.alerts.v1", "Write") and not broker.allowed("u", "topic", "lfr.x.alerts.v1", "Read")
    assert not Authorizer([user(acl("g", ["Read"], kind="group"))]).allowed("u", "topic", "g", "Read")


def test_a_forces_pods_log_in_as_that_forces_kafka_users_and_its_topics_job_makes_its_topics():
    from tests.deploy.helpers import pod_specs, render

    values = {**VALUES, "settings": {"force": "gmp", "kafkaSecurityProtocol": "SASL_SSL", "kafkaSaslMechanism": "SCRAM-SHA-512"},
              "kafka": {"sasl": {"perComponentUsers": True}}, "topicsJob": {"enabled": True}}
    docs = render(values)
    rendered = {d["metadata"]["name"] for d in docs if d["kind"] == "KafkaUser"}
    logins = {}
    for workload, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            if "LFR_KAFKA_SASL_USERNAME" in env:
                logins[workload] = env["LFR_KAFKA_SASL_USERNAME"]["value"]
                assert env["LFR_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == logins[workload]
            if container["name"] == "topics-apply":
                assert container["command"][-2:] == ["--force", "gmp"]
    assert set(logins.values()) <= rendered
    assert {u for w, u in logins.items() if w.startswith("Deployment/")} == {f"openlfr-gmp-{s}" for s in
                                                                          ("ingest", "detect", "embed", "matcher", "dispatch", "review", "deployment-events")}
    assert logins["Job/lfr-openlfr-topics"] == "openlfr-platform"
