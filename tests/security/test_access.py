"""The least-privilege table (services/common/access.toml) against topics.toml, the services'
own settings, and the generated Strimzi KafkaUsers."""

from __future__ import annotations

import subprocess
import sys

import yaml

from services.common.access import load_access
from services.common.settings import (
    DeploymentSettings,
    DetectSettings,
    DispatchSettings,
    EmbedSettings,
    ForceSettings,
    IngestSettings,
    MatcherSettings,
)
from services.common.topics import default_config_path, load_topic_specs
from tests.conftest import PROJECT_ROOT

ACCESS = load_access()
TOPICS = {spec.name for spec in load_topic_specs(default_config_path())}


def defaults(cls, **required) -> object:
    return cls.model_construct(**required)  # the field defaults, without reading the environment


def test_every_topic_is_used_by_someone_and_every_used_topic_exists():
    literal = {t for p in ACCESS.values() for t in p.topics}
    assert literal <= TOPICS, f"in access.toml but not topics.toml: {sorted(literal - TOPICS)}"
    unused = {t for t in TOPICS if not any(p.may(t, op) for p in ACCESS.values() for op in ("Read", "Write"))}
    assert not unused, f"in topics.toml but nobody reads or writes them: {sorted(unused)}"
    for topic in TOPICS:  # every topic has a writer and a reader (the platform's dead-letter reading included)
        assert any(p.may(topic, "Write") for p in ACCESS.values()), topic
        assert any(p.may(topic, "Read") for p in ACCESS.values()), topic


def test_each_service_may_do_exactly_what_its_settings_say_it_does():
    # every pipeline service enforces deployments, each change only when its audit record is found (issue #23)
    seen = {"deployments_topic": "Read", "audit_topic": "Read"}
    uses = {
        "ingest": (defaults(IngestSettings), {"output_topic": "Write", **seen}),
        "detect": (defaults(DetectSettings), {"input_topic": "Read", "output_topic": "Write", "dlq_topic": "Write", "counts_topic": "Write", **seen}),
        "embed": (defaults(EmbedSettings), {"input_topic": "Read", "output_topic": "Write", "dlq_topic": "Write", **seen}),
        "matcher": (defaults(MatcherSettings), {**seen, "input_topic": "Read", "output_topic": "Write", "dlq_topic": "Write",
                                                "watchlist_topic": "Read", "audit_topic": "Write"}),
        "dispatch": (defaults(DispatchSettings), {"input_topic": "Read", "output_topic": "Write", "dlq_topic": "Write",
                                                  "evidence_topic": "Write", "evidence_keys_topic": "Read", **seen}),
        "admin": (defaults(DeploymentSettings), {"watchlist_topic": "Write", "audit_topic": "Write", "deployments_topic": "Write"}),
    }
    for name, (settings, needed) in uses.items():
        principal = ACCESS[name]
        wanted = {(getattr(settings, field), op) for field, op in needed.items()}
        if name == "matcher" or name == "admin":
            wanted.add((settings.audit_topic, "Read"))  # the audit writer reads the chain's tail
            wanted.add((settings.watchlist_topic, "Read"))
        if name == "admin":
            wanted.add((settings.deployments_topic, "Read"))
            wanted |= {(ForceSettings.model_fields["forces_topic"].default, op) for op in ("Read", "Write")}  # lfr forces
        if name == "ingest":
            wanted.add(("lfr.dlq.v1", "Write"))  # dead letters of refused deployment records
        for topic, op in wanted:
            assert principal.may(topic, op), (name, topic, op)
        granted = {(t, op) for t, ops in principal.topics.items() for op in ops if op in ("Read", "Write")}
        assert granted == wanted, (name, sorted(granted - wanted))  # nothing more than it uses
        if hasattr(settings, "group_id") and name != "admin":
            assert principal.groups == {settings.group_id: ("Read",)}, name


def test_untrusted_input_cannot_reach_the_watchlist_or_the_audit():
    for name, principal in ACCESS.items():
        if name != "admin":
            assert not principal.may("lfr.watchlist.v1", "Write"), name
        if name not in ("admin", "matcher", "review"):
            assert not principal.may("lfr.audit.v2", "Write"), name
    assert {t: "Write" in ops for t, ops in ACCESS["ingest"].topics.items()} == {
        "lfr.frames.v1": True, "lfr.dlq.v1": True, "lfr.deployments.v1": False, "lfr.audit.v2": False}


def test_generated_kafka_users_match_the_table():
    check = subprocess.run([sys.executable, str(PROJECT_ROOT / "k8s" / "generate.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    docs = [d for d in yaml.safe_load_all((PROJECT_ROOT / "k8s/overlays/prod/kafka-users.yaml").read_text()) if d]
    assert {d["metadata"]["name"] for d in docs} == {f"openlfr-{name}" for name in ACCESS}
    for doc in docs:
        principal = ACCESS[doc["metadata"]["name"].removeprefix("openlfr-")]
        acls = doc["spec"]["authorization"]["acls"]
        assert doc["spec"]["authentication"]["type"] == "scram-sha-512"
        topics = {a["resource"]["name"]: tuple(a["operations"]) for a in acls
                  if a["resource"]["type"] == "topic" and a["resource"]["patternType"] == "literal"}
        groups = {a["resource"]["name"]: tuple(a["operations"]) for a in acls if a["resource"]["type"] == "group"}
        assert topics == principal.topics and groups == principal.groups
        assert all(a["operations"] != ["All"] and a["resource"].get("name") != "*" for a in acls)


def test_chart_gives_each_pod_its_own_kafka_user():
    """With kafka.sasl.perComponentUsers, every workload logs in as the KafkaUser of its principal
    in access.toml (the purge job as admin, the topics job as platform), password from its Secret."""
    from tests.deploy.helpers import pod_specs, render

    values = {"settings": {"kafkaSecurityProtocol": "SASL_SSL", "kafkaSaslMechanism": "SCRAM-SHA-512"},
              "kafka": {"sasl": {"perComponentUsers": True}}, "topicsJob": {"enabled": True}}
    seen = {}
    for workload, spec in pod_specs(render(values)).items():
        for container in spec["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            if "LFR_KAFKA_SASL_USERNAME" not in env:
                continue
            user = env["LFR_KAFKA_SASL_USERNAME"]["value"]
            assert env["LFR_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": user, "key": "password"}, workload
            seen[workload] = user.removeprefix("openlfr-")
    assert set(seen.values()) >= {"ingest", "detect", "embed", "matcher", "dispatch", "admin", "platform"}
    assert set(seen.values()) <= set(ACCESS)
    for workload, principal in seen.items():
        if workload.startswith("Deployment/"):
            assert workload.endswith(principal), (workload, principal)
