"""`lfr topics apply/describe` and `lfr broker` against real brokers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from services.common.broker import free_port
from services.common.topics import load_topic_specs


def load_specs_by_name() -> dict:
    return {spec.name: spec for spec in load_topic_specs()}

EXPECTED = {
    "lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1", "lfr.matches.v1", "lfr.alerts.v3",
    "lfr.watchlist.v1", "lfr.adjudications.v3", "lfr.audit.v2", "lfr.dlq.v1", "lfr.deployments.v1", "lfr-dispatch-open-alerts-changelog",
    "lfr.evidence.v1", "lfr.evidence_keys.v1", "lfr.counts.v2", "lfr.forces.v1", "lfr.heartbeats.v1", "lfr-link-inbound",
    "lfr.deployment_events.v1",
}


def _lfr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def test_topic_config_covers_every_topic_with_biometric_retention():
    specs = {spec.name: spec for spec in load_topic_specs()}
    assert set(specs) == EXPECTED
    for name in ("lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1"):
        config = specs[name].config
        assert specs[name].biometric and specs[name].promise_ms == 60000
        # 45 s + 5 s segments + the 10 s retention check of k8s/base/kafka.yaml: one minute at most.
        assert int(config["retention.ms"]) + int(config["segment.ms"]) + 10_000 <= 60000
    for spec in specs.values():
        if spec.biometric:
            assert spec.config["message.timestamp.type"] == "LogAppendTime", spec.name
    assert specs["lfr.alerts.v3"].config["retention.ms"] == str(31 * 86_400_000)
    assert specs["lfr.watchlist.v1"].config["cleanup.policy"] == "compact"
    assert not specs["lfr.dlq.v1"].biometric  # dead letters from biometric topics carry no value


def test_dispatcher_changelog_is_declared_with_the_settings_the_dispatcher_asks_faust_for():
    from services.common.settings import DispatchSettings
    from services.pipeline.dispatch.service import changelog_config

    spec = {s.name: s for s in load_topic_specs()}["lfr-dispatch-open-alerts-changelog"]
    settings = DispatchSettings()
    assert spec.config == changelog_config(settings)
    assert spec.config["cleanup.policy"] == "compact,delete"
    assert int(spec.config["retention.ms"]) == int((settings.cooldown_s + settings.state_grace_s) * 1000)
    assert spec.partitions == {s.name: s for s in load_topic_specs()}[settings.input_topic].partitions


def test_lfr_broker_then_topics_apply_then_describe():
    port = free_port()
    broker = subprocess.Popen([sys.executable, "-m", "services.cli", "broker", "--port", str(port), "--no-topics"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = broker.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        env = {"LFR_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
        first = _lfr("topics", "apply", env=env)
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("created") == len(EXPECTED)
        again = _lfr("topics", "apply", env=env)
        assert again.returncode == 0 and again.stdout.count("unchanged") == len(EXPECTED)

        # Drift on the cluster is put back by the next apply.
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        resource = ConfigResource("topic", "lfr.frames.v1", incremental_configs=[
            ConfigEntry("retention.ms", "999999", incremental_operation=AlterConfigOpType.SET)])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result()
        fixed = _lfr("topics", "apply", env=env)
        assert "lfr.frames.v1            updated    set retention.ms=45000" in fixed.stdout

        described = _lfr("topics", "describe", env=env)
        assert described.returncode == 0, described.stderr
        rows = {line.split()[0]: line.split() for line in described.stdout.splitlines()[1:]}
        assert set(rows) == EXPECTED
        assert rows["lfr.frames.v1"][1:3] == ["8", "45s"]
        assert rows["lfr.alerts.v3"][1:3] == ["4", "31d"]
        assert rows["lfr.watchlist.v1"][2] == "compacted"

        # The embedded broker cannot keep the promise: verify says so plainly and fails, while
        # every biometric topic's own settings pass.
        verified = _lfr("topics", "verify", "--json", env=env)
        assert verified.returncode == 1, verified.stderr
        verdict = json.loads(verified.stdout)
        assert verdict["broker"] == "embedded-tansu" and "until the broker stops" in verdict["notes"][0]
        assert {t["topic"] for t in verdict["topics"]} == {n for n, s in load_specs_by_name().items() if s.biometric}
        assert all(t["settings_ok"] and not t["ok"] for t in verdict["topics"]), verdict["topics"]
        text = _lfr("topics", "verify", env=env)
        assert text.returncode == 1 and "Tansu" in text.stdout and "until the broker stops" in text.stdout

        # Drift that breaks the promise is named: CreateTime and a long retention on frames.
        resource = ConfigResource("topic", "lfr.frames.v1", incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("message.timestamp.type", "CreateTime", incremental_operation=AlterConfigOpType.SET)])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result()
        frames = {t["topic"]: t for t in json.loads(_lfr("topics", "verify", "--json", env=env).stdout)["topics"]}["lfr.frames.v1"]
        assert not frames["settings_ok"]
        assert any("retention.ms=3600000" in p for p in frames["problems"])
        assert any("message.timestamp.type=CreateTime" in p for p in frames["problems"])
    finally:
        broker.send_signal(signal.SIGTERM)
        assert broker.wait(15) == 0
