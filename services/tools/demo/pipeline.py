"""Runs the whole pipeline locally: embedded broker plus the five services as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from services.governance.audit.identity import ephemeral_identity, identity_from_env, second_key
from services.common.broker import EmbeddedBroker
from services.common.signing import Signer
from services.common.topics import apply_topics, load_topic_specs

READY_MARKERS = {"ingest": '"msg": "ingest started"', "dispatch": '"msg": "dispatcher ready"', "review": '"msg": "review ready"',
                 "deployment-events": '"msg": "deployment events ready"'}


class Pipeline:
    """Start, stop and restart services against one embedded broker; logs go to ``workdir``."""

    def __init__(self, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_path=workdir / "broker.log")
        self.processes: dict[str, subprocess.Popen] = {}
        self.extra_env = extra_env or {}
        self.cameras_file = workdir / "cameras.json"
        self._log_offsets: dict[str, int] = {}
        self._services: dict[str, str] = {}
        self.truth_dir = workdir / "truth"
        # The operator and the services sign with the configured key (tests), else a throw-away
        # one trusted only here (the demo); a second key is the authorising officer's.
        self.signing_env = identity_from_env(os.environ) or ephemeral_identity(workdir / "keys", "demo:operator")
        self.authoriser = second_key(self.signing_env, "demo:authoriser")
        self.operator = Signer.load(Path(self.signing_env["LFR_SIGNING_KEY_FILE"]), self.signing_env["LFR_SIGNING_KEY_PASSPHRASE"])

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LFR_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            # The embedded broker holds a new group's first join for half the session timeout.
            "LFR_SESSION_TIMEOUT_MS": "6000",
            "LFR_HEARTBEAT_INTERVAL_MS": "1000",
            "LFR_METRICS_PORT": "0",
            "LFR_CAMERAS_FILE": str(self.cameras_file),
            "LFR_TRUTH_DIR": str(self.truth_dir),
            "LFR_QDRANT_PATH": ":memory:",
            **self.signing_env,
            **self.extra_env,
        }

    def start_broker(self) -> None:
        self.broker.start()
        apply_topics(AdminClient({"bootstrap.servers": self.bootstrap}), load_topic_specs())

    def start(self, service: str, env: dict[str, str] | None = None, name: str | None = None, cpus: str | None = None) -> subprocess.Popen:
        """Start ``service`` as process ``name`` (default: the service; give replicas their own names),
        pinned to the CPU list ``cpus`` (taskset syntax, e.g. "0") when given."""
        name = name or service
        path = self.workdir / f"{name}.log"
        self._log_offsets[name] = path.stat().st_size if path.exists() else 0
        self._services[name] = service
        log = open(path, "ab")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(
            [*(["taskset", "-c", cpus] if cpus else []), sys.executable, "-m", "services.cli", "run", service],
            env={**self.env(), **(env or {})},
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.processes[name] = process
        return process

    def ready(self, name: str) -> bool:
        """True once the process, since its latest start, logged that it is ready to work."""
        marker = READY_MARKERS.get(self._services.get(name, name), '"msg": "partitions assigned"')
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return False
        with path.open("rb") as handle:
            handle.seek(self._log_offsets.get(name, 0))
            return marker in handle.read().decode("utf-8", errors="replace")

    def wait_ready(self, services: tuple[str, ...], timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for service in services:
                code = self.processes[service].poll()
                if code is not None:
                    raise RuntimeError(f"{service} exited with code {code}; see {self.workdir / (service + '.log')}")
            if all(self.ready(s) for s in services):
                return
            time.sleep(0.2)
        raise TimeoutError(f"services not ready within {timeout_s} s: {[s for s in services if not self.ready(s)]}")

    def stop(self, service: str, timeout_s: float = 30.0) -> int:
        process = self.processes.pop(service)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return -9
        return process.returncode

    def stop_all(self) -> dict[str, int]:
        # Upstream first (ingest, then detect...), so downstream services finish what is in flight.
        order = {service: i for i, service in enumerate(("ingest", "detect", "embed", "matcher", "dispatch", "review"))}
        codes = {}
        for name in sorted(self.processes, key=lambda n: order.get(self._services.get(n, n), 99)):
            codes[name] = self.stop(name)
        self.broker.stop()
        return codes

    def truth(self) -> list[dict]:
        records = []
        for path in sorted(self.truth_dir.glob("*.jsonl")) if self.truth_dir.exists() else []:
            records += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return records
