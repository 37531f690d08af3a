"""The chart's ci/ values sets (chart-testing's convention): each renders, lints strictly and
validates against the Kubernetes schemas, and shows the feature it is there for."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.helpers import CHART, KUBE_VERSION, by_kind, helm, name, render, strip

CI = CHART / "ci"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
SETS = sorted(path.name for path in CI.glob("*-values.yaml"))


def values(file: str) -> dict:
    return yaml.safe_load((CI / file).read_text(encoding="utf-8"))


def test_the_ci_sets_cover_the_features():
    assert SETS == ["hpa-values.yaml", "keda-values.yaml", "monitoring-values.yaml", "networkpolicy-values.yaml",
                    "tls-sasl-values.yaml"]


@pytest.mark.parametrize("file", SETS)
def test_each_ci_set_lints_and_validates(file):
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    report = helm().lint(str(CHART), values(file), strict=True)
    assert not [m for m in report["messages"] if m["severity"] >= 2] and not report["errors"], report
    for doc in render(values(file)):
        resource = strip(doc)
        if resource["kind"] in CRD_KINDS:
            assert resource["metadata"]["name"] and resource["spec"]
            continue
        try:
            kubernetes_validate.validate(resource, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{file}: {doc['__template']}: {resource['kind']}/{resource['metadata']['name']}: {exc.message}")


def test_each_ci_set_renders_its_feature():
    kinds = {file: {d["kind"] for d in render(values(file))} for file in SETS}
    assert {"ScaledObject"} <= kinds["keda-values.yaml"] and "HorizontalPodAutoscaler" not in kinds["keda-values.yaml"]
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds["hpa-values.yaml"]
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds["monitoring-values.yaml"]
    assert "NetworkPolicy" in kinds["networkpolicy-values.yaml"]
    tls = by_kind(render(values("tls-sasl-values.yaml")), "Deployment")[name("matcher")]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in tls["containers"][0]["env"]}
    assert env["LFR_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert "secretKeyRef" in env["LFR_KAFKA_SASL_PASSWORD"]["valueFrom"] and "secretKeyRef" in env["LFR_QDRANT_API_KEY"]["valueFrom"]


def test_network_policy_egress_goes_only_to_named_peers():
    """Kafka, Qdrant and the webhook only at the peers given in values; nothing else but DNS
    (and, for ingest, the cameras' ports)."""
    policies = by_kind(render(values("networkpolicy-values.yaml")), "NetworkPolicy")
    broker = [{"podSelector": {"matchLabels": {"strimzi.io/cluster": "openlfr"}}}]
    qdrant = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "qdrant"}}}]
    webhook = [{"ipBlock": {"cidr": "203.0.113.10/32"}}]
    for service in ("detect", "embed", "matcher", "dispatch", "ingest"):
        egress = policies[name(service)]["spec"]["egress"]
        dns, *rules = egress
        assert {p["port"] for p in dns["ports"]} == {53}
        by_port = {tuple(p["port"] for p in rule["ports"]): rule.get("to") for rule in rules}
        expected = {(9092,): broker}
        if service == "matcher":
            expected[(6333,)] = qdrant
        if service == "dispatch":
            expected[(443,)] = webhook
        if service == "ingest":
            expected[(554, 8554, 80, 443)] = None  # cameras: any address, camera ports only
        assert by_port == expected, (service, by_port)
