"""Fleet simulation (issue #26 point 6): replayed-outcome vans across forces, each with its own
embedded broker, its link (services/van/link, durable outbox) and the core's intake per force
(services/van/fleet/intake_service.py) on one core broker, through a set of faults.

A van here replays outcomes (alerts, as the dispatcher writes them, at --rate per second); none
runs the models. Scenarios (``scenario`` in the result), each after a fresh start:

* ``steady``: --seconds of running, the link up throughout;
* ``link_cut_<N>s``: --seconds, then an N s cut (--cut-s) during which each forwarder takes
  outcomes into its outbox but sends nothing (what it does when the core is unreachable);
* ``flapping_link``: --seconds with every van's link down and up again every --flap-s seconds;
* ``van_power_cut``: van-0's link runs as its own process (`lfr run link`) and is killed with
  SIGKILL halfway, left dead for --flap-s seconds, then restarted on the same outbox;
* ``core_broker_restart``: halfway, the links pause (outcomes queue in the vans), the intakes
  write what they hold, the core's broker stops and a new one starts on the same port (the
  embedded broker keeps memory only, so what it held is read before the stop, as a durable
  cluster would keep it), topics are applied again and the links resume;
* ``van_clock_5min_off``: van-0's clock (its alerts' times and its records' timestamps) is
  five minutes ahead of the core's.

``drain_s`` is the time from the last link-up (the end of the run) to every van's outbox empty.
At the end every topic of the core is read: ``alerts_delivered`` counts distinct alert ids on the
forces' alert topics, ``duplicates`` the records beyond one per id, ``lost`` raised minus
delivered, ``biometric_records_at_core`` records of a biometric schema or with binary attachments.

    python benchmarks/fleet.py [--vans 10 --forces 7 --rate 5 --seconds 20 --cut-s 60] [--out F]
    lfr fleet simulate ...    (the same)

Writes benchmarks/results/fleet.json: vans, forces, scenarios (scenario, alerts_raised,
alerts_delivered, duplicates, lost, drain_s, biometric_records_at_core), bytes_per_van_hour
(in-process links only: the bytes of van_power_cut's link process are not counted).
Not yet: full van pipelines with real models, a 10-minute cut in the default run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from services.common import jsonevents  # noqa: E402
from services.common.broker import EmbeddedBroker  # noqa: E402
from services.common.topics import apply_topics, load_topic_specs  # noqa: E402
from services.governance.forces.naming import force_topic  # noqa: E402
from services.governance.forces.topics import specs_for_force  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fleet.json"
BIOMETRIC_SCHEMAS = ("frames", "faces", "embeddings", "matches", "evidence", "evidence_keys", "watchlist")


def alert_record(van: str, seq: int, now_ms: int) -> tuple[bytes, bytes, list]:
    """One alert as a van's dispatcher raises it (services/pipeline/dispatch/policy.decide on a match)."""
    from services.pipeline.dispatch.policy import decide
    from services.engine.face.models import SFACE

    match = {
        "subject_id": f"subj-{van}-{seq % 7}", "reference": f"W-{van}-{seq}", "category": "wanted_by_courts", "priority": "red",
        "score": 0.61, "threshold": 0.5, "rank": 1, "model": {"name": SFACE.name, "sha256": SFACE.sha256},
        "face": {"frame": {"camera_id": f"{van}-mast-1", "deployment_id": f"dep-{van}", "seq": seq, "captured_at_ms": now_ms,
                           "width": 640, "height": 480},
                 "face_index": 0, "box": [10, 20, 122, 132], "landmarks": [[40, 60], [80, 60], [60, 80], [45, 100], [75, 100]],
                 "quality": {"face_width_px": 112, "interocular_px": 40, "blur": 120, "yaw": 0, "roll": 0, "detector_score": 0.95},
                 "chip": {"media_type": "image/jpeg", "data": b"\xff\xd8 replayed"}, "detected_at_ms": now_ms + 20},
        "embedded_at_ms": now_ms + 40, "matched_at_ms": now_ms + 50,
    }
    _, alert = decide(None, match, 60_000, now_ms + 300)
    value, headers = jsonevents.encode("lfr.alerts.v3", alert.data)
    return alert.data["subject_id"].encode(), value, headers


class ReplayVan:
    """A van that replays alerts into its own broker and forwards them with the real link."""

    def __init__(self, van_id: str, force: str, core: str, workdir: Path, *, skew_ms: int = 0, process: bool = False) -> None:
        from services.van.link.outbox import Outbox
        from services.van.link.service import build
        from services.van.link.settings import LinkSettings

        self.van_id, self.force, self.skew_ms, self.workdir = van_id, force, skew_ms, workdir
        self.broker = EmbeddedBroker(log_path=workdir / f"{van_id}.log")
        self.broker.start()
        apply_topics(AdminClient({"bootstrap.servers": self.broker.bootstrap_servers}), specs_for_force(load_topic_specs(), force))
        self.settings = LinkSettings(kafka_bootstrap_servers=self.broker.bootstrap_servers, link_core_bootstrap_servers=core, force=force,
                                     van_id=van_id, link_outbox_path=workdir / f"{van_id}.outbox.sqlite", link_group_id=f"lfr-link-{van_id}",
                                     session_timeout_ms=6000, heartbeat_interval_ms=1000, metrics_port=0)
        self.env = {**os.environ, "LFR_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers, "LFR_LINK_CORE_BOOTSTRAP_SERVERS": core,
                    "LFR_FORCE": force, "LFR_VAN_ID": van_id, "LFR_LINK_OUTBOX_PATH": str(self.settings.link_outbox_path),
                    "LFR_LINK_GROUP_ID": self.settings.link_group_id, "LFR_SESSION_TIMEOUT_MS": "6000", "LFR_HEARTBEAT_INTERVAL_MS": "1000",
                    "LFR_METRICS_PORT": "0", "LFR_LINK_REBUILD_AFTER_S": "5"}
        # A van whose link is a process of its own (to kill it with SIGKILL): no in-process forwarder.
        self.process: subprocess.Popen | None = self.start_link_process() if process else None
        self.forwarder = None if process else build(self.settings)
        self.outbox = Outbox(self.settings.link_outbox_path) if process else None
        self.producer = Producer({"bootstrap.servers": self.broker.bootstrap_servers, "enable.idempotence": True})
        self.raised = 0
        self.link_up = threading.Event()
        self.link_up.set()
        self.stop = threading.Event()
        self.forwarded_bytes = 0

    def start_link_process(self) -> subprocess.Popen:
        log = open(self.workdir / f"{self.van_id}.link.log", "ab")  # noqa: SIM115 - the process keeps it
        return subprocess.Popen([sys.executable, "-m", "services.cli", "run", "link"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def wait_link_ready(self, timeout_s: float = 120.0) -> None:
        """Until the link process says it forwards (its start takes seconds on a loaded machine)."""
        log, deadline = self.workdir / f"{self.van_id}.link.log", time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if log.exists() and b'"msg": "link forwarding"' in log.read_bytes():
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.van_id}'s link exited {self.process.returncode}: see {log}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.van_id}'s link did not start in {timeout_s} s")

    def taken_in(self) -> int:
        """Records the link committed on the van's broker (taken into its outbox)."""
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap_servers, "group.id": self.settings.link_group_id})
        try:
            topic = force_topic(self.force, "lfr.alerts.v3")
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            return sum(max(tp.offset, 0) for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10))
        finally:
            consumer.close()

    def power_cut(self, off_s: float) -> None:
        """SIGKILL the link process (no clean shutdown, nothing flushed), off_s seconds dark, then start it again."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        time.sleep(off_s)
        self.process = self.start_link_process()
        self.wait_link_ready()

    def raise_alert(self) -> None:
        now_ms = int(time.time() * 1000) + self.skew_ms  # the van's own clock
        key, value, headers = alert_record(self.van_id, self.raised, now_ms)
        self.producer.produce(force_topic(self.force, "lfr.alerts.v3"), key=key, value=value, headers=headers, timestamp=now_ms)
        self.producer.poll(0)
        self.raised += 1

    def forward(self) -> None:
        if self.forwarder is None:
            return
        while not self.stop.is_set():
            if self.link_up.is_set():
                self.forwarder.step()
            else:
                self.forwarder.intake(0.2)  # the link is cut: outcomes go to the outbox, nothing is sent

    def backlog(self) -> int:
        return (self.outbox or self.forwarder.outbox).backlog().rows

    def close(self) -> None:
        self.stop.set()
        self.producer.flush(10)

    def shut(self) -> None:
        """After the scenario: the link stopped, the broker too."""
        if self.forwarder is not None:
            self.forwarder.close(1)
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.outbox is not None:
            self.outbox.close()
        self.broker.stop()


def run_intakes(forces: list[str], core: str, vans: dict[str, str], stop: threading.Event) -> list[threading.Thread]:
    from services.van.fleet.intake_memory import output_topics
    from services.van.fleet.intake_service import build
    from services.van.fleet.settings import IntakeSettings

    threads = []
    for force in forces:
        settings = IntakeSettings(kafka_bootstrap_servers=core, force=force, intake_group_id=f"lfr-intake-{force}",
                                  session_timeout_ms=6000, heartbeat_interval_ms=1000, metrics_port=0)
        # this force's intake reads back only its force's topics: its landing topic carries only its vans
        intake = build(settings, vans, output_topics=output_topics({v: f for v, f in vans.items() if f == force}))

        def loop(intake=intake):
            while not stop.is_set():
                intake.step(0.2)
            intake.close()

        threads.append(threading.Thread(target=loop, daemon=True))
        threads[-1].start()
    return threads


def read_core(core: str, forces: list[str], found: dict | None = None) -> dict:
    """Every record of every topic at the core: alerts by id, and anything biometric (added to
    ``found`` when given: what a broker held before it restarted)."""
    consumer = Consumer({"bootstrap.servers": core, "group.id": "fleet-sim-audit", "enable.auto.commit": False, "enable.partition.eof": True})
    topics = [t for t in consumer.list_topics(timeout=10).topics if not t.startswith("__")]
    ids: dict[str, int] = found["ids"] if found else {}
    biometric = found["biometric"] if found else 0
    from services.van.link.egress import _has_attachments, logical_name, record_schema

    for topic in topics:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        wanted = {p for p, end in ends.items() if end > 0}
        if not wanted:
            continue
        consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
        done: set[int] = set()
        deadline = time.monotonic() + 60
        while done != wanted and time.monotonic() < deadline:
            for record in consumer.consume(1000, 0.5):
                if record.error() is not None:
                    done.add(record.partition())
                    continue
                if record.offset() + 1 >= ends[record.partition()]:
                    done.add(record.partition())
                value = record.value() or b""
                schema = record_schema(record.value(), record.headers()) if value else None
                if (schema and logical_name(schema) in BIOMETRIC_SCHEMAS) or _has_attachments(value) or b"\xff\xd8" in value:
                    biometric += 1
                if logical_name(topic) == "alerts" and value:
                    alert_id = json.loads(value)["alert_id"]
                    ids[alert_id] = ids.get(alert_id, 0) + 1
        consumer.unassign()
    consumer.close()
    return {"ids": ids, "biometric": biometric}


SCENARIOS = ("steady", "link_cut", "flapping_link", "van_power_cut", "core_broker_restart", "van_clock_5min_off")
CLOCK_SKEW_MS = 5 * 60_000


def apply_core_topics(core: str, forces: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": core})
    for force in forces:
        apply_topics(admin, specs_for_force(load_topic_specs(), force))


def scenario(kind: str, n_vans: int, n_forces: int, rate: float, seconds: float, cut_s: float, flap_s: float,
             workdir: Path) -> tuple[dict, float]:
    """One scenario from a fresh start (SCENARIOS); the result row and the link bytes counter after it."""
    name = f"link_cut_{cut_s:g}s" if kind == "link_cut" else kind
    forces = [f"force{chr(ord('a') + i)}" for i in range(n_forces)]
    core = EmbeddedBroker(log_path=workdir / "core.log")
    core.start()
    apply_core_topics(core.bootstrap_servers, forces)
    register = {f"van-{i}": forces[i % n_forces] for i in range(n_vans)}
    stop = threading.Event()
    intakes = run_intakes(forces, core.bootstrap_servers, register, stop)
    vans = [ReplayVan(van, force, core.bootstrap_servers, workdir, skew_ms=CLOCK_SKEW_MS if kind == "van_clock_5min_off" and i == 0 else 0,
                      process=kind == "van_power_cut" and i == 0)
            for i, (van, force) in enumerate(register.items())]
    forwarders = [threading.Thread(target=van.forward, daemon=True) for van in vans]
    for thread in forwarders:
        thread.start()
    for van in vans:
        if van.process is not None:
            van.wait_link_ready()
    alert_record("warm-up", 0, int(time.time() * 1000))  # imports and schema compilation before the clock starts
    start = time.monotonic()
    # The cut comes last, so the drain measured after it is of the whole backlog the cut built up.
    cut_from, cut_to = (seconds, seconds + cut_s) if kind == "link_cut" else (None, None)
    total = seconds + (cut_s if kind == "link_cut" else 0)
    halfway_done = False
    held_before_restart: dict | None = None
    tick = 1.0 / rate
    next_at = start
    while time.monotonic() - start < total:
        elapsed = time.monotonic() - start
        cut = (cut_from is not None and cut_from <= elapsed < cut_to) or (kind == "flapping_link" and int(elapsed // flap_s) % 2 == 1)
        for van in vans:
            (van.link_up.clear if cut else van.link_up.set)()
        if not halfway_done and elapsed >= seconds / 2:
            halfway_done = True
            if kind == "van_power_cut":
                threading.Thread(target=vans[0].power_cut, args=(flap_s,), daemon=True).start()
            elif kind == "core_broker_restart":
                held_before_restart, core = restart_core(core, forces, vans, workdir)
                next_at = time.monotonic()  # the vans kept no clock while the core was down: start ticking again
        for van in vans:
            van.raise_alert()
        next_at += tick
        time.sleep(max(0.0, next_at - time.monotonic()))
    for van in vans:
        van.link_up.set()
        van.producer.flush(10)
    up_at = time.monotonic()  # the link is up for good: drain (the forwarders took the cut's alerts in as they came)
    deadline = up_at + 300
    # drained: every van's link took in all it raised, and its outbox is empty
    while any(van.backlog() or (van.process is not None and van.taken_in() < van.raised) for van in vans) and time.monotonic() < deadline:
        time.sleep(0.05)
    drain_s = time.monotonic() - up_at
    time.sleep(3.0)  # the intakes write the last records on
    for van in vans:
        van.close()
    stop.set()
    for thread in (*forwarders, *intakes):
        thread.join(15)
    found = read_core(core.bootstrap_servers, forces, held_before_restart)
    from prometheus_client import REGISTRY

    bytes_forwarded = REGISTRY.get_sample_value("lfr_link_bytes_forwarded_total") or 0.0
    for van in vans:
        van.shut()
    core.stop()
    raised = sum(van.raised for van in vans)
    delivered = len(found["ids"])
    return ({"scenario": name, "alerts_raised": raised, "alerts_delivered": delivered,
             "duplicates": sum(count - 1 for count in found["ids"].values()), "lost": raised - delivered,
             "drain_s": round(drain_s, 2), "biometric_records_at_core": found["biometric"],
             "vans": n_vans, "forces": n_forces, "rate_per_van_per_s": rate, "seconds": round(total, 1),
             "link_cut_s": cut_s if kind == "link_cut" else 0},
            bytes_forwarded)


def restart_core(core: EmbeddedBroker, forces: list[str], vans: list[ReplayVan], workdir: Path) -> tuple[dict, EmbeddedBroker]:
    """Pause the links, let the intakes write what they took, read what the core holds (memory
    storage: a durable cluster keeps it), stop the broker, start a new one on the same port,
    apply the topics, resume the links. What the old broker held (read before the stop), and the new one."""
    for van in vans:
        van.link_up.clear()
    time.sleep(3.0)  # in-flight sends settle; the intakes write on and commit
    held = read_core(core.bootstrap_servers, forces)
    core.stop()
    restarted = EmbeddedBroker(port=core.port, log_path=workdir / "core-restarted.log")
    restarted.start()
    apply_core_topics(restarted.bootstrap_servers, forces)
    for van in vans:
        van.link_up.set()
    return held, restarted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vans", type=int, default=10)
    parser.add_argument("--forces", type=int, default=7)
    parser.add_argument("--rate", type=float, default=5.0, help="alerts per second per van (replayed)")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady running time of each scenario")
    parser.add_argument("--cut-s", type=float, default=60.0, help="length of the link cut of the cut scenario")
    parser.add_argument("--flap-s", type=float, default=2.0, help="half-period of the flapping link; dark time of the van power cut")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: 2 vans, 2 forces, 4 s, a 2 s cut (steady and link_cut only)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.vans, args.forces, args.rate, args.seconds, args.cut_s = 2, 2, 5.0, 4.0, 2.0
        args.scenarios = "steady,link_cut"
    if args.forces > args.vans or args.forces > 26:
        parser.error("--forces must be at most --vans (and 26)")
    kinds = [k.strip() for k in args.scenarios.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    scenarios, bytes_total, seconds_total = [], 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="lfr-fleet-") as tmp:
        for kind in kinds:
            workdir = Path(tmp) / kind
            workdir.mkdir()
            result, forwarded = scenario(kind, args.vans, args.forces, args.rate, args.seconds, args.cut_s, args.flap_s, workdir)
            scenarios.append(result)
            bytes_total = forwarded  # the counter is cumulative over the scenarios
            seconds_total += result["seconds"] + result["drain_s"]
    report = {"vans": args.vans, "forces": args.forces, "scenarios": scenarios, "smoke": args.smoke,
              "bytes_per_van_hour": round(bytes_total / args.vans / seconds_total * 3600) if seconds_total else 0,
              "note": "replayed-outcome vans only (no models); cuts and flaps are simulated at the van (sends withheld); "
                      "the power cut is a SIGKILL of one van's link process"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({s["scenario"]: {k: s[k] for k in ("alerts_raised", "alerts_delivered", "duplicates", "lost", "drain_s",
                                                         "biometric_records_at_core")} for s in scenarios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
