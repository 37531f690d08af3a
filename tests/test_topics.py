"""`lfr topics apply/describe` and `lfr broker` against real brokers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from services.common.broker import free_port
from services.common.topics import load_topic_specs

EXPECTED = {
    "lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1", "lfr.matches.v1", "lfr.alerts.v1",
    "lfr.watchlist.v1", "lfr.adjudications.v1", "lfr.audit.v1", "lfr.dlq.v1", "lfr.deployments.v1",
}


def _lfr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=120)


def test_topic_config_covers_every_topic_with_biometric_retention():
    specs = {spec.name: spec for spec in load_topic_specs()}
    assert set(specs) == EXPECTED
    for name in ("lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1"):
        assert specs[name].biometric and specs[name].config["retention.ms"] == "60000"
        assert int(specs[name].config["segment.ms"]) <= 60000
    assert specs["lfr.alerts.v1"].config["retention.ms"] == str(31 * 86_400_000)
    assert specs["lfr.watchlist.v1"].config["cleanup.policy"] == "compact"


def test_lfr_broker_then_topics_apply_then_describe():
    port = free_port()
    broker = subprocess.Popen([sys.executable, "-m", "services.cli", "broker", "--port", str(port)],
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
        assert "lfr.frames.v1            updated    set retention.ms=60000" in fixed.stdout

        described = _lfr("topics", "describe", env=env)
        assert described.returncode == 0, described.stderr
        rows = {line.split()[0]: line.split() for line in described.stdout.splitlines()[1:]}
        assert set(rows) == EXPECTED
        assert rows["lfr.frames.v1"][1:3] == ["8", "1min"]
        assert rows["lfr.alerts.v1"][1:3] == ["4", "31d"]
        assert rows["lfr.watchlist.v1"][2] == "compacted"
    finally:
        broker.send_signal(signal.SIGTERM)
        assert broker.wait(15) == 0
