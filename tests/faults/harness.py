"""A two-stage pipeline of real processes for fault injection, with ground truth.

relay (`lfr run passthrough`, the StageRunner every face stage uses) copies lfr.matches.v1
records from an ingress topic to the dispatcher's input; the dispatcher (`lfr run dispatch`)
turns them into alerts with deterministic CloudEvent ids. Walkers (subjects) appear one after
another and stay in view until the end, each sending a sighting every SIGHTING_INTERVAL_S, so
the ground truth is one alert (revision 0) per walker: a duplicate ce_id or a walker without an
alert is a fault. A process supervisor restarts any process that exits (as Kubernetes would)
and counts the exits nobody asked for (crash_restarts). The broker is this harness's own, under
`lfr broker`'s supervisor, so restarting it does not disturb the session broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from services.common.broker import EmbeddedBroker
from services.common.broker_supervisor import BrokerSupervisor
from services.common.envelope import decode
from services.common.topics import TopicSpec
from services.dispatch.policy import alert_id_for, ce_id_for
from tests.dispatch.helpers import record
from tests.kafka_helpers import unique

PARTITIONS = 4
SIGHTING_INTERVAL_S = 0.25
RECOVERY_BOUND_S = 30.0


class Chain:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.topics = {name: unique(f"faults-{name}") for name in ("ingress", "matches", "alerts", "dlq", "deployments")}
        self.broker = EmbeddedBroker(log_path=workdir / "broker.log")
        # The dispatcher's changelog is listed too, as `lfr broker` must re-create every topic
        # a service needs (privacy #11 moves it into topics.toml).
        changelog = TopicSpec("faults-dispatch-open-alerts-changelog", PARTITIONS, 1, False, {"cleanup.policy": "compact"})
        self.broker_supervisor = BrokerSupervisor(
            self.broker, [TopicSpec(t, PARTITIONS, 1, False) for t in self.topics.values()] + [changelog],
            memory_warn_bytes=2**40, check_interval_s=0.2, report=lambda _line: None,
        )
        self.processes: dict[str, subprocess.Popen] = {}
        self.expected_exits: set[str] = set()
        self.crash_restarts = 0
        self.alerts: list[tuple[float, str, str]] = []  # (seen at, ce_id, subject)
        self.dead: list[dict[str, str]] = []
        self.first_seen: dict[str, int] = {}
        self.first_sent_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._walkers: list[str] = []
        self._lock = threading.Lock()

    # -- processes ---------------------------------------------------------------------------

    def env(self, service: str) -> dict[str, str]:
        common = {
            **os.environ,
            "LFR_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            "LFR_SESSION_TIMEOUT_MS": "6000",
            "LFR_HEARTBEAT_INTERVAL_MS": "1000",
            "LFR_METRICS_PORT": "0",
            "LFR_SHUTDOWN_TIMEOUT_S": "15",
            "LFR_AUTO_COMMIT_INTERVAL_MS": "200",
            "LFR_DLQ_TOPIC": self.topics["dlq"],
            "LFR_DEPLOYMENTS_TOPIC": self.topics["deployments"],
        }
        if service == "relay":
            return {**common, "LFR_INPUT_TOPICS": self.topics["ingress"], "LFR_OUTPUT_TOPIC": self.topics["matches"], "LFR_GROUP_ID": "faults-relay"}
        return {**common, "LFR_INPUT_TOPIC": self.topics["matches"], "LFR_OUTPUT_TOPIC": self.topics["alerts"], "LFR_GROUP_ID": "faults-dispatch"}

    def start_process(self, name: str) -> None:
        command = "passthrough" if name == "relay" else "dispatch"
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", command], env=self.env(name), stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()

    def signal(self, name: str, signum: int) -> None:
        self.expected_exits.add(name)
        self.processes[name].send_signal(signum)

    def _supervise(self) -> None:
        while not self._stop.wait(0.2):
            for name, process in list(self.processes.items()):
                if process.poll() is None:
                    continue
                if name in self.expected_exits:
                    self.expected_exits.discard(name)
                else:
                    self.crash_restarts += 1
                self.start_process(name)

    # -- walkers and observation -------------------------------------------------------------

    def _walk(self, walkers: int, arrival_interval_s: float, duration_s: float) -> None:
        producer = Producer({"bootstrap.servers": self.broker.bootstrap_servers, "allow.auto.create.topics": False, "message.timeout.ms": 5000})
        started = time.monotonic()
        seq = 0
        while not self._stop.is_set() and time.monotonic() - started < duration_s:
            arrived = min(walkers, 1 + int((time.monotonic() - started) / arrival_interval_s))
            for i in range(arrived):
                subject = f"walker-{i}"
                now_ms = int(time.time() * 1000)
                with self._lock:
                    if subject not in self.first_sent_at:
                        self.first_sent_at[subject] = time.monotonic()
                        self._walkers.append(subject)
                seq += 1
                try:
                    producer.produce(self.topics["ingress"], key=subject.encode(),
                                     value=record(subject=subject, seq=seq, captured_at_ms=now_ms, score=0.6))
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            self._stop.wait(SIGHTING_INTERVAL_S)
        producer.flush(10)

    def _observe(self) -> None:
        consumer = None
        restarts = self.broker_supervisor.restarts
        while not self._stop.is_set():
            try:
                if consumer is not None and self.broker_supervisor.restarts != restarts:
                    # The topics were re-created empty: positions from before would skip records.
                    restarts = self.broker_supervisor.restarts
                    consumer.close()
                    consumer = None
                if consumer is None:
                    consumer = Consumer({"bootstrap.servers": self.broker.bootstrap_servers, "group.id": unique("obs"),
                                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
                    consumer.assign([TopicPartition(self.topics[t], p, 0) for t in ("alerts", "dlq") for p in range(PARTITIONS)])
                for message in consumer.consume(200, 0.2):
                    if message.error() is not None:
                        continue
                    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in message.headers() or ()}
                    if message.topic() == self.topics["alerts"]:
                        data = decode(message.value()).data
                        with self._lock:
                            self.alerts.append((time.monotonic(), headers["ce_id"], data["subject_id"]))
                    else:
                        with self._lock:
                            self.dead.append(headers)
            except Exception:  # noqa: BLE001 - the broker is restarting; reconnect
                time.sleep(0.5)
        if consumer is not None:
            consumer.close()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, walkers: int, arrival_interval_s: float, duration_s: float) -> None:
        from tests.deployment_helpers import active_deployment, publish_deployment

        self.broker_supervisor.start()
        # The dispatcher alerts only within an active deployment (#10).
        publish_deployment(self.broker.bootstrap_servers, self.topics["deployments"], active_deployment("van-1", ["cam-1"]))
        self._threads.append(threading.Thread(target=self.broker_supervisor.run, daemon=True))
        for name in ("dispatch", "relay"):
            self.start_process(name)
        self.wait_log("dispatch", '"msg": "dispatcher ready"', 90)
        self.wait_log("relay", '"msg": "partitions assigned"', 60)
        self._threads += [threading.Thread(target=target, daemon=True) for target in (self._supervise, self._observe)]
        self._threads.append(threading.Thread(target=self._walk, args=(walkers, arrival_interval_s, duration_s), daemon=True))
        for thread in self._threads:
            thread.start()

    def wait_log(self, name: str, marker: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if marker in (self.workdir / f"{name}.log").read_text(errors="replace"):
                return
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited: {(self.workdir / f'{name}.log').read_text()[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready in {timeout_s} s")

    def alerted(self) -> set[str]:
        with self._lock:
            return {subject for _t, _ce, subject in self.alerts}

    def walkers(self) -> list[str]:
        with self._lock:
            return list(self._walkers)

    def stop(self) -> None:
        self._stop.set()
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for thread in self._threads:
            thread.join(10)
        self.broker_supervisor.stop()
        self.broker.stop()

    def figures(self, scenario: str, fault_at: float | None) -> dict:
        with self._lock:
            ce_ids = Counter(ce for _t, ce, _s in self.alerts)
            alerted = {s for _t, _ce, s in self.alerts}
            walkers = list(self._walkers)
            recovery = None
            if fault_at is not None:
                later = [t for t, _ce, s in self.alerts if self.first_sent_at.get(s, 0) > fault_at]
                recovery = round(min(later) - fault_at, 2) if later else None
            return {
                "scenario": scenario,
                "duplicate_alerts": sum(n - 1 for n in ce_ids.values()),
                "lost_alerts": len([w for w in walkers if w not in alerted]),
                "lost_walkers": [w for w in walkers if w not in alerted],
                "dead_lettered": len(self.dead),
                "crash_restarts": self.crash_restarts,
                "recovery_s": recovery,
                "walkers": len(walkers),
                "alerts": len(self.alerts),
            }


def expected_ce_id(subject: str, camera: str, first_captured_ms: int) -> str:
    return ce_id_for(alert_id_for(subject, camera, first_captured_ms), 0)
