"""The runner as a real process (`lfr run passthrough`): crash, drain and start-up failures."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from services.common.jsonevents import decode_record
from tests.kafka_helpers import audit_record, committed_total, create_topics, produce, unique, wait_until


def _start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", "passthrough"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class _SlowProducer(threading.Thread):
    """Produces `count` numbered records over a few seconds, so runners are killed mid-stream."""

    def __init__(self, bootstrap: str, topic: str, count: int, per_batch: int = 25, pause_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.args = (bootstrap, topic, count, per_batch, pause_s)

    def run(self) -> None:
        bootstrap, topic, count, per_batch, pause_s = self.args
        for start in range(0, count, per_batch):
            produce(bootstrap, topic, [audit_record(i) for i in range(start, min(count, start + per_batch))],
                    keys=[str(i).encode() for i in range(start, min(count, start + per_batch))])
            time.sleep(pause_s)


def _pipeline(broker, kafka_env):
    source, sink, dlq = unique("in"), unique("out"), unique("dlq")
    create_topics(broker.bootstrap_servers, source, sink, dlq)
    env = {**kafka_env, "LFR_INPUT_TOPICS": source, "LFR_OUTPUT_TOPIC": sink, "LFR_DLQ_TOPIC": dlq,
           "LFR_GROUP_ID": unique("proc"), "LFR_BATCH_MAX_MESSAGES": "20"}
    return env, source, sink


def test_sigkill_mid_stream_loses_nothing(broker, kafka_env, reader):
    env, source, sink = _pipeline(broker, kafka_env)
    total = 1500
    out = reader(sink)
    feeder = _SlowProducer(broker.bootstrap_servers, source, total)
    first = _start(env)
    feeder.start()
    try:
        wait_until(lambda: len(out.poll()) >= 200, 60, "the first runner to pass records through")
        wait_until(lambda: committed_total(broker.bootstrap_servers, env["LFR_GROUP_ID"], source) > 0, 30, "a first commit")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # Everything the killed runner had produced is in the topic; read until no more arrives.
        counts = [-1]
        wait_until(lambda: counts.append(len(out.poll())) or counts[-1] == counts[-2], 10, "the sink to settle")
        before_restart = collections.Counter(decode_record(r.value(), r.headers()).data["details"]["seq"] for r in out.poll())
        assert sum(before_restart.values()) < total, "runner finished before it was killed; the test proves nothing"
        committed_at_kill = committed_total(broker.bootstrap_servers, env["LFR_GROUP_ID"], source)
        second = _start(env)
        try:
            feeder.join(60)
            wait_until(lambda: len({decode_record(r.value(), r.headers()).data["details"]["seq"] for r in out.poll()}) == total, 90,
                       "every record after the restart")
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
    finally:
        if first.poll() is None:
            first.kill()
    counts = collections.Counter(decode_record(r.value(), r.headers()).data["details"]["seq"] for r in out.poll())
    duplicated = {seq for seq, count in counts.items() if count > 1}
    duplicates = sum(c - 1 for c in counts.values())
    # At-least-once: nothing is lost. Duplicates are records the killed runner had already sent
    # but not yet committed (auto-commit runs every LFR_AUTO_COMMIT_INTERVAL_MS): they must all
    # come from its output, and the new runner must resume from a committed offset, not the start.
    assert set(counts) == set(range(total))
    assert duplicated <= set(before_restart), "a record was duplicated that the first runner never sent"
    assert 0 < committed_at_kill and duplicates <= sum(before_restart.values()) - committed_at_kill, (
        f"{duplicates} re-sent, but only {sum(before_restart.values()) - committed_at_kill} were sent and uncommitted at the kill")
    print(f"sigkill test: {total} records, {sum(before_restart.values())} sent before the kill, {committed_at_kill} committed, "
          f"{duplicates} sent again after it")


def test_sigterm_drains_commits_and_exits_zero(broker, kafka_env, reader):
    env, source, sink = _pipeline(broker, kafka_env)
    out = reader(sink)
    feeder = _SlowProducer(broker.bootstrap_servers, source, 800)
    runner = _start(env)
    feeder.start()
    wait_until(lambda: len(out.poll()) >= 100, 60, "records flowing")
    started = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    code = runner.wait(30)
    stderr = runner.stderr.read()
    assert code == 0, stderr[-2000:]
    assert time.monotonic() - started < float(env["LFR_SHUTDOWN_TIMEOUT_S"])
    feeder.join(60)
    # Drained: every record that was passed through is committed, and nothing beyond it.
    committed = committed_total(broker.bootstrap_servers, env["LFR_GROUP_ID"], source)
    wait_until(lambda: len(out.poll()) >= committed, 10, "the reader to catch up with the sink")
    assert len(out.poll()) == committed
    assert '"msg": "runner stopped"' in stderr


@pytest.mark.parametrize("service", ["passthrough", "ingest", "detect", "embed", "matcher", "dispatch"])
def test_bad_setting_fails_at_start_naming_the_variable(kafka_env, service):
    env = {**kafka_env, "LFR_INPUT_TOPICS": "a", "LFR_OUTPUT_TOPIC": "b", "LFR_METRICS_PORT": "70000"}
    result = subprocess.run([sys.executable, "-m", "services.cli", "run", service], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "LFR_METRICS_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_secret_settings_never_print(monkeypatch):
    from services.common.settings import KafkaSettings, load_settings

    monkeypatch.setenv("LFR_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LFR_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("LFR_KAFKA_SASL_USERNAME", "lfr")
    monkeypatch.setenv("LFR_KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    settings = load_settings(KafkaSettings)
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
