"""Fleet simulation (issue #26 point 6, first part): replayed-outcome vans across forces, each with
its own embedded broker, its link (services/link, durable outbox) and the core's intake per force
(services/fleet/intake_service.py) on one core broker; a steady run and a link cut.

A van here replays outcomes (alerts, as the dispatcher writes them, at --rate per second); none
runs the models. A link cut is simulated at the van: after --seconds of steady running, for --cut-s seconds the
forwarder takes outcomes into its outbox but sends nothing (what it does when the core is
unreachable), then sends again; ``drain_s`` is the time from link-up (the end of the run) to every
van's outbox empty. At the end every
topic of the core is read: ``alerts_delivered`` counts distinct alert ids on the forces' alert
topics, ``duplicates`` the records beyond one per id, ``lost`` raised minus delivered,
``biometric_records_at_core`` records of a biometric schema or with binary attachments.

    python benchmarks/fleet.py [--vans 4 --forces 2 --rate 5 --seconds 20 --cut-s 60] [--out F]
    lfr fleet simulate ...    (the same)

Writes benchmarks/results/fleet.json: vans, forces, scenarios (scenario, alerts_raised,
alerts_delivered, duplicates, lost, drain_s, biometric_records_at_core), bytes_per_van_hour.
Not yet: full van pipelines with real models, flapping links, a van power cut, a core broker
restart, a van clock 5 minutes off (the link's own tests cover a kill -9 and a core restart).
"""

from __future__ import annotations

import argparse
import json
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
from services.forces.naming import force_topic  # noqa: E402
from services.forces.topics import specs_for_force  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fleet.json"
BIOMETRIC_SCHEMAS = ("frames", "faces", "embeddings", "matches", "evidence", "evidence_keys", "watchlist")


def alert_record(van: str, seq: int, now_ms: int) -> tuple[bytes, bytes, list]:
    """One alert as a van's dispatcher raises it (services/dispatch/policy.decide on a match)."""
    from services.dispatch.policy import decide
    from services.face.models import SFACE

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

    def __init__(self, van_id: str, force: str, core: str, workdir: Path) -> None:
        from services.link.service import build
        from services.link.settings import LinkSettings

        self.van_id, self.force = van_id, force
        self.broker = EmbeddedBroker(log_path=workdir / f"{van_id}.log")
        self.broker.start()
        apply_topics(AdminClient({"bootstrap.servers": self.broker.bootstrap_servers}), specs_for_force(load_topic_specs(), force))
        self.settings = LinkSettings(kafka_bootstrap_servers=self.broker.bootstrap_servers, link_core_bootstrap_servers=core, force=force,
                                     van_id=van_id, link_outbox_path=workdir / f"{van_id}.outbox.sqlite", link_group_id=f"lfr-link-{van_id}",
                                     session_timeout_ms=6000, heartbeat_interval_ms=1000, metrics_port=0)
        self.forwarder = build(self.settings)
        self.producer = Producer({"bootstrap.servers": self.broker.bootstrap_servers, "enable.idempotence": True})
        self.raised = 0
        self.link_up = threading.Event()
        self.link_up.set()
        self.stop = threading.Event()
        self.forwarded_bytes = 0

    def raise_alert(self) -> None:
        key, value, headers = alert_record(self.van_id, self.raised, int(time.time() * 1000))
        self.producer.produce(force_topic(self.force, "lfr.alerts.v3"), key=key, value=value, headers=headers)
        self.producer.poll(0)
        self.raised += 1

    def forward(self) -> None:
        while not self.stop.is_set():
            if self.link_up.is_set():
                self.forwarder.step()
            else:
                self.forwarder.intake(0.2)  # the link is cut: outcomes go to the outbox, nothing is sent

    def backlog(self) -> int:
        return self.forwarder.outbox.backlog().rows

    def close(self) -> None:
        self.stop.set()
        self.producer.flush(10)


def run_intakes(forces: list[str], core: str, vans: dict[str, str], stop: threading.Event) -> list[threading.Thread]:
    from services.fleet.intake_service import build
    from services.fleet.settings import IntakeSettings

    threads = []
    for force in forces:
        settings = IntakeSettings(kafka_bootstrap_servers=core, force=force, intake_group_id=f"lfr-intake-{force}",
                                  session_timeout_ms=6000, heartbeat_interval_ms=1000, metrics_port=0)
        intake = build(settings, vans)

        def loop(intake=intake):
            while not stop.is_set():
                intake.step(0.2)
            intake.close()

        threads.append(threading.Thread(target=loop, daemon=True))
        threads[-1].start()
    return threads


def read_core(core: str, forces: list[str]) -> dict:
    """Every record of every topic at the core: alerts by id, and anything biometric."""
    consumer = Consumer({"bootstrap.servers": core, "group.id": "fleet-sim-audit", "enable.auto.commit": False, "enable.partition.eof": True})
    topics = [t for t in consumer.list_topics(timeout=10).topics if not t.startswith("__")]
    ids: dict[str, int] = {}
    biometric = 0
    from services.link.egress import _has_attachments, logical_name, record_schema

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


def scenario(name: str, n_vans: int, n_forces: int, rate: float, seconds: float, cut_s: float, workdir: Path) -> tuple[dict, float]:
    forces = [f"force{chr(ord('a') + i)}" for i in range(n_forces)]
    core = EmbeddedBroker(log_path=workdir / "core.log")
    core.start()
    admin = AdminClient({"bootstrap.servers": core.bootstrap_servers})
    for force in forces:
        apply_topics(admin, specs_for_force(load_topic_specs(), force))
    register = {f"van-{i}": forces[i % n_forces] for i in range(n_vans)}
    stop = threading.Event()
    intakes = run_intakes(forces, core.bootstrap_servers, register, stop)
    vans = [ReplayVan(van, force, core.bootstrap_servers, workdir) for van, force in register.items()]
    forwarders = [threading.Thread(target=van.forward, daemon=True) for van in vans]
    for thread in forwarders:
        thread.start()
    alert_record("warm-up", 0, int(time.time() * 1000))  # imports and schema compilation before the clock starts
    start = time.monotonic()
    # The cut comes last, so the drain measured after it is of the whole backlog the cut built up.
    cut_from, cut_to = (seconds, seconds + cut_s) if cut_s else (None, None)
    total = seconds + (cut_s or 0)
    tick = 1.0 / rate
    next_at = start
    while time.monotonic() - start < total:
        elapsed = time.monotonic() - start
        cut = cut_from is not None and cut_from <= elapsed < cut_to
        for van in vans:
            (van.link_up.clear if cut else van.link_up.set)()
        for van in vans:
            van.raise_alert()
        next_at += tick
        time.sleep(max(0.0, next_at - time.monotonic()))
    for van in vans:
        van.link_up.set()
        van.producer.flush(10)
    up_at = time.monotonic()  # the link is up for good: drain (the forwarders took the cut's alerts in as they came)
    deadline = up_at + 300
    while any(van.backlog() for van in vans) and time.monotonic() < deadline:
        time.sleep(0.05)
    drain_s = time.monotonic() - up_at
    time.sleep(3.0)  # the intakes write the last records on
    for van in vans:
        van.close()
    stop.set()
    for thread in (*forwarders, *intakes):
        thread.join(15)
    found = read_core(core.bootstrap_servers, forces)
    from prometheus_client import REGISTRY

    bytes_forwarded = REGISTRY.get_sample_value("lfr_link_bytes_forwarded_total") or 0.0
    for van in vans:
        van.forwarder.close(1)
        van.broker.stop()
    core.stop()
    raised = sum(van.raised for van in vans)
    delivered = len(found["ids"])
    return ({"scenario": name, "alerts_raised": raised, "alerts_delivered": delivered,
             "duplicates": sum(count - 1 for count in found["ids"].values()), "lost": raised - delivered,
             "drain_s": round(drain_s, 2), "biometric_records_at_core": found["biometric"],
             "vans": n_vans, "forces": n_forces, "rate_per_van_per_s": rate, "seconds": round(total, 1), "link_cut_s": cut_s},
            bytes_forwarded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vans", type=int, default=4)
    parser.add_argument("--forces", type=int, default=2)
    parser.add_argument("--rate", type=float, default=5.0, help="alerts per second per van (replayed)")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady running time of each scenario")
    parser.add_argument("--cut-s", type=float, default=60.0, help="length of the link cut of the cut scenario")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: 2 vans, 2 forces, 4 s, a 2 s cut")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.vans, args.forces, args.rate, args.seconds, args.cut_s = 2, 2, 5.0, 4.0, 2.0
    if args.forces > args.vans or args.forces > 26:
        parser.error("--forces must be at most --vans (and 26)")
    scenarios, bytes_total, seconds_total = [], 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="lfr-fleet-") as tmp:
        for name, cut in (("steady", 0.0), (f"link_cut_{args.cut_s:g}s", args.cut_s)):
            workdir = Path(tmp) / name
            workdir.mkdir()
            result, forwarded = scenario(name, args.vans, args.forces, args.rate, args.seconds, cut, workdir)
            scenarios.append(result)
            bytes_total = forwarded  # the counter is cumulative over the scenarios
            seconds_total += result["seconds"] + result["drain_s"]
    report = {"vans": args.vans, "forces": args.forces, "scenarios": scenarios, "smoke": args.smoke,
              "bytes_per_van_hour": round(bytes_total / args.vans / seconds_total * 3600) if seconds_total else 0,
              "note": "replayed-outcome vans only (no models); the cut is simulated at the van (sends withheld)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({s["scenario"]: {k: s[k] for k in ("alerts_raised", "alerts_delivered", "duplicates", "lost", "drain_s",
                                                         "biometric_records_at_core")} for s in scenarios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
