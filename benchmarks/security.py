"""Security benchmark: what signature checks and the audit chain cost, as ratios against the same
work without them, measured in one process.

    python benchmarks/security.py [--records 2000] [--appends 100] [--out FILE] [--smoke]

1. Loading the watchlist: decoding N watchlist records (one 128-d embedding each) into entries,
   the materialiser's work per record, with and without the Ed25519 verification in front
   (signature, keyring lookup, replay check). No broker: the decode is the baseline.
2. Appending audit records on the embedded broker: AuditWriter.write (tail check, seal, sign,
   produce, wait for the acknowledgement) against a plain produce-and-flush of a record of the
   same size.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.governance.audit.writer import AuditWriter  # noqa: E402
from services.common.broker import EmbeddedBroker  # noqa: E402
from services.common import jsonevents  # noqa: E402
from services.common.envelope import decode, encode  # noqa: E402
from services.common.settings import KafkaSettings  # noqa: E402
from services.common.signing import Keyring, ReplayGuard, Signer, verify_record  # noqa: E402
from services.engine.face.models import SFACE, ModelIdentity  # noqa: E402
from services.governance.watchlist.entry import EnrolledEmbedding, Provenance, WatchlistEntry  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TOPIC = "lfr.watchlist.v1"


def records(n: int, signer: Signer) -> list[tuple[bytes, bytes, list]]:
    rng = np.random.default_rng(7)
    model = ModelIdentity(SFACE.name, SFACE.sha256)
    out = []
    for i in range(n):
        v = rng.normal(size=128).astype(np.float32)
        entry = WatchlistEntry(f"s{i}", f"R{i}", "suspect", "red", Provenance("custody", 1, "PACE", "x", 1), 2**40, ("d",),
                               (EnrolledEmbedding(model, v / np.linalg.norm(v)),))
        key, value = entry.subject_id.encode(), encode("lfr.watchlist.v1", entry.to_data())
        out.append((key, value, signer.record_headers(TOPIC, key, value, audit_hash="ab" * 32)))
    return out


def load(batch, keyring: Keyring | None) -> float:
    guard = ReplayGuard()
    start = time.perf_counter()
    for key, value, headers in batch:
        if keyring is not None:
            guard.check(key, verify_record(keyring, TOPIC, key, value, headers))
        WatchlistEntry.from_data(decode(value).data)
    return time.perf_counter() - start


def best_of(runs: int, action) -> float:
    return min(action() for _ in range(runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--appends", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "security.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs, times nothing meaningful")
    args = parser.parse_args(argv)
    n, appends = (50, 5) if args.smoke else (args.records, args.appends)

    signer = Signer.generate("bench")
    keyring = Keyring(None)
    keyring.add(signer, 0)
    batch = records(n, signer)
    plain = best_of(3, lambda: load(batch, None))
    verified = best_of(3, lambda: load(batch, keyring))

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        settings = KafkaSettings(kafka_bootstrap_servers=broker.bootstrap_servers)
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in ("bench-audit", "bench-plain")]).values():
            future.result(30)
        writer = AuditWriter(settings, "bench-audit", signer, "bench")
        writer.write("bench.warmup", None, {})
        start = time.perf_counter()
        for i in range(appends):
            writer.write("watchlist.add", f"s{i}", {"category": "suspect", "images": 1})
        chained = time.perf_counter() - start
        size = len(jsonevents.encode("lfr.audit.v2", writer.write("bench.size", "s0", {"category": "suspect", "images": 1})[0])[0])
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "enable.idempotence": True, "acks": "all"})
        producer.produce("bench-plain", b"w" * size)
        producer.flush(10)
        start = time.perf_counter()
        for _ in range(appends):
            producer.produce("bench-plain", b"x" * size)
            producer.flush(10)
        baseline = time.perf_counter() - start
        writer.close()

    result = {
        "smoke": args.smoke,
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count()},
        "watchlist_load": {"records": n, "decode_ms_per_record": 1000 * plain / n,
                           "verify_and_decode_ms_per_record": 1000 * verified / n,
                           "ratio_verified_over_decode": verified / plain},
        "audit_append": {"appends": appends, "record_bytes": size, "plain_produce_ms": 1000 * baseline / appends,
                         "chained_signed_ms": 1000 * chained / appends, "ratio_chained_over_plain": chained / baseline},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"watchlist load x{result['watchlist_load']['ratio_verified_over_decode']:.2f} with signatures "
          f"({result['watchlist_load']['verify_and_decode_ms_per_record']:.3f} ms/record); audit append "
          f"x{result['audit_append']['ratio_chained_over_plain']:.2f} ({result['audit_append']['chained_signed_ms']:.1f} ms each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
