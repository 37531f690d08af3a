"""The chart's two roles (issue #26): `role: van` renders the van's services and the link, `role:
core` the force's platform and the intake; `site` (the default) stays the whole pipeline."""

from __future__ import annotations

import pytest

from .helpers import example, helm, render, render_raw

VAN = {"role": "van", "link": {"settings": {"linkCoreBootstrapServers": "core-kafka.example:9093", "vanId": "van-7"}},
       "matcher": {"settings": {"qdrantUrl": None}, "qdrant": {"existingSecret": ""}}}
CORE = {"role": "core", "intake": {"vans": [{"van_id": "van-7", "force": "gmp"}]}}


def _deployments(values):
    return {doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc for doc in render(values) if doc["kind"] == "Deployment"}


def _kinds(values, kind):
    return {doc["metadata"]["name"] for doc in render(values) if doc["kind"] == kind}


def _env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_van_role_renders_the_pipeline_and_the_link_without_the_core_jobs():
    deployments = _deployments(VAN)
    assert sorted(deployments) == sorted(["ingest", "detect", "embed", "matcher", "dispatch", "review", "link"])
    link = deployments["link"]["spec"]["template"]["spec"]["containers"][0]
    assert link["command"] == ["lfr", "run", "link"]
    env = _env(link)
    assert env["LFR_LINK_CORE_BOOTSTRAP_SERVERS"] == "core-kafka.example:9093"
    assert "LFR_LINK_CORE_TOPIC" not in env  # its default: the core intake's landing topic (a force's, under LFR_FORCE)
    assert env["LFR_LINK_OUTBOX_PATH"].startswith("/var/lib/openlfr-link/")
    assert deployments["link"]["spec"]["strategy"]["type"] == "Recreate"  # one writer of the outbox
    assert any(n.endswith("-link") for n in _kinds(VAN, "PersistentVolumeClaim"))  # the outbox survives a power cut
    assert not any(n.endswith("-link") for n in _kinds(None, "PersistentVolumeClaim"))
    assert "LFR_QDRANT_URL" not in _env(deployments["matcher"]["spec"]["template"]["spec"]["containers"][0])  # in-process index
    assert _kinds(VAN, "CronJob") == set()  # the van's bundle erases itself; the watchlist is the core's


def test_core_role_renders_the_platform_and_the_intake_with_its_fleet_register():
    deployments = _deployments(CORE)
    assert sorted(deployments) == ["deployment-events", "intake", "review"]
    intake = deployments["intake"]["spec"]["template"]["spec"]["containers"][0]
    assert intake["command"] == ["lfr", "run", "intake"]
    assert _env(intake)["LFR_INTAKE_VANS_FILE"] == "/etc/openlfr/fleet/fleet-vans.json"
    config = next(doc for doc in render(CORE) if doc["kind"] == "ConfigMap")
    assert '"van_id": "van-7"' in config["data"]["fleet-vans.json"]
    assert {n.rsplit("-", 2)[-2] + "-" + n.rsplit("-", 1)[-1] for n in _kinds(CORE, "CronJob")} == {"watchlist-purge", "deployment-sweep"}


def test_site_role_is_the_default_and_renders_what_it_did():
    assert sorted(_deployments(None)) == sorted(["ingest", "detect", "embed", "matcher", "dispatch", "review", "deployment-events"])


def test_a_van_without_its_core_address_is_refused():
    with pytest.raises(Exception, match="linkCoreBootstrapServers"):
        render_raw({"role": "van"})


def test_an_unknown_role_is_refused_by_the_schema():
    helm()
    with pytest.raises(Exception, match="role"):
        render_raw({"role": "edge"})


@pytest.mark.parametrize("name", ["values-van.yaml", "values-core.yaml"])
def test_the_role_examples_render(name):
    assert render(example(name))
