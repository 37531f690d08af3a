"""Rendering the chart without a helm binary, and reading what it renders.

helm-python-sdk (PyPI) binds Helm's own Go SDK (v4) through a bundled shared library, so
``Chart.render`` is the real template engine and values-schema validation of ``helm template``,
offline and without a cluster.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "openlfr"
EXAMPLES = ROOT / "helm" / "examples"
K8S = ROOT / "k8s"
RELEASE = "lfr"
NAMESPACE = "openlfr"
SERVICES = ("ingest", "detect", "embed", "matcher", "dispatch", "review", "deployment-events")
CONSUMERS = ("detect", "embed", "matcher", "dispatch")
RULES = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
METRIC = re.compile(r"(?<![A-Za-z0-9_])lfr_[a-z0-9_]+")
#: Kubernetes version the manifests are validated against (kubernetes-validate ships 1.25-1.37).
KUBE_VERSION = "1.30"


def load_script(path: Path, module_name: str):
    """Import a script by path under its own name (helm/generate.py and k8s/generate.py)."""
    import importlib.util
    import sys

    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def helm():
    import pytest

    return pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (pip install -e '.[dev]')")


@functools.lru_cache(maxsize=1)
def _chart():
    return helm().Chart.load(str(CHART))


def render_raw(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm template lfr helm/openlfr -n openlfr` gives."""
    return dict(_render_cached(json.dumps(values, sort_keys=True) if values else ""))


@functools.lru_cache(maxsize=64)
def _render_cached(values_json: str) -> tuple[tuple[str, str], ...]:
    values = json.loads(values_json) if values_json else None
    return tuple(_chart().render(values, name=RELEASE, namespace=NAMESPACE).items())


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest the chart renders, each with its template path under ``__template``."""
    docs = []
    for template, text in sorted(render_raw(values).items()):
        if not template.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template"] = template
                docs.append(doc)
    return docs


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__template"}


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def name(component: str) -> str:
    return f"{RELEASE}-openlfr-{component}"


def example(file: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / file).read_text(encoding="utf-8"))


def all_features(autoscaler: str = "keda") -> dict[str, Any]:
    """The prod example (TLS + SASL, Qdrant key, webhook, monitoring, PDB, NetworkPolicy, KEDA)
    plus the optional topics Job and two forces' KafkaUsers, with KEDA or an HPA."""
    values = example("values-prod.yaml")
    values["topicsJob"] = {"enabled": True}
    values["kafkaUsers"] = {"enabled": True}  # per-force Strimzi KafkaUsers (templates/kafka-users.yaml)
    values["forces"] = [{"id": "gmp"}, {"id": "wyp", "quotas": {"producerByteRate": 5242880}}]
    values["kafka"]["tls"]["client"] = {"existingSecret": "openlfr-client", "certificateKey": "user.crt",
                                        "keyKey": "user.key", "keyPasswordKey": "user.password"}
    values["kafka"]["sasl"]["usernameKey"] = "username"
    values["autoscaling"] = {"keda": {"enabled": autoscaler == "keda", "triggerAuthenticationRef": "openlfr-kafka"},
                             "hpa": {"enabled": autoscaler == "hpa"}}
    return values


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """kind/name -> pod spec, for every workload (Deployments, CronJobs, Jobs, Pods)."""
    specs = {}
    for doc in docs:
        kind, meta = doc["kind"], doc["metadata"]["name"]
        if kind == "Deployment" or kind == "Job":
            specs[f"{kind}/{meta}"] = doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            specs[f"{kind}/{meta}"] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            specs[f"{kind}/{meta}"] = doc["spec"]
    return specs


def dashboard_queries() -> list[str]:
    """Every PromQL query of the dashboard: panel targets and template variables."""
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in document["panels"] for t in p.get("targets", [])]
    for variable in document["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def rule_queries() -> list[str]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


#: Metrics the rules use that other work exports (issue numbers of the OpenLFR tracker). Until
#: their exporter lands, the checks below accept their absence; after that they are checked too.
EXTERNAL_METRICS: dict[str, str] = {
    # The fleet view is the core intake's (services/van/fleet/fleetview.py), not the pipeline's: the
    # live scrape of the pipeline cannot see it; tests/fleet/test_fleet_view.py checks it instead.
    name: "the core intake (lfr run intake)" for name in (
        "lfr_fleet_heartbeat_received_timestamp_seconds", "lfr_fleet_heartbeat_timestamp_seconds", "lfr_fleet_backlog_records",
        "lfr_fleet_backlog_oldest_age_seconds", "lfr_fleet_deployment_active", "lfr_fleet_bundle_window_end_timestamp_seconds",
        "lfr_fleet_bundle_erase_timestamp_seconds", "lfr_fleet_bundles_past_window", "lfr_fleet_cameras_sending",
        "lfr_fleet_camera_fps", "lfr_fleet_link_up", "lfr_fleet_disk_free_bytes", "lfr_fleet_disk_total_bytes",
        "lfr_fleet_van_info", "lfr_fleet_heartbeats_total", "lfr_intake_records_refused_total",
        "lfr_intake_records_accepted_total", "lfr_intake_records_duplicate_total")
}


def referenced_metrics() -> set[str]:
    """lfr_* metric names the dashboard and the rules use (`up` is Prometheus' own)."""
    return {m for query in dashboard_queries() + rule_queries() for m in METRIC.findall(query)}
