"""Embedded broker memory: how fast Tansu (memory storage) grows per hour of video.

    python benchmarks/broker_memory.py [--video-seconds 300] [--fps 4] [--out FILE] [--smoke]

Starts an embedded broker with the pipeline's topics, measures its RSS (the baseline, same
process), then produces what the demo camera produces for ``--video-seconds`` of video: a
1280x720 synthetic-crowd frame per 1/fps s (LFW faces when the data set is present, else a
textured background), and for every visible face a faces record (JPEG chip) and an embeddings
record (the face message plus a 512-byte vector), as fast as the broker takes them. Tansu keeps
every record until it stops (retention is not enforced), so growth is linear in video time:
the JSON gives MB per hour of video and the hours until the `lfr broker` warning bound.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from services.common.broker import EmbeddedBroker  # noqa: E402
from services.common.settings import EmbeddedBrokerSettings  # noqa: E402
from services.common.topics import apply_topics, load_topic_specs  # noqa: E402

CHIP_BYTES_QUALITY = 90


def frames(fps: float):
    """(jpeg bytes, faces visible) per frame, endlessly: the crowd scene or a textured stand-in."""
    data_dir = ROOT.parent / "shared" / "datasets" / "lfw-dev"
    try:
        from services.pipeline.ingest.crowd import CrowdConfig, CrowdScene, cast_from_folder

        names = sorted(p.name for p in data_dir.iterdir() if p.is_dir())[:12]
        scene = CrowdScene(cast_from_folder(data_dir, names, 1), CrowdConfig(fps=fps))
        source = "synthetic crowd (LFW faces)"
        render = scene.render
    except Exception:  # noqa: BLE001 - no data set: a textured background, no faces
        rng = np.random.default_rng(1)
        base = cv2.GaussianBlur(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), (9, 9), 0)
        source = "textured background (no data set)"

        def render(_i):
            return base, []
    i = 0
    while True:
        image, truth = render(i)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        chips = []
        for face in truth:
            x1, y1, x2, y2 = (int(v) for v in face["box"])
            crop = image[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
            chip = cv2.resize(crop, (112, 112)) if crop.size else np.zeros((112, 112, 3), np.uint8)
            chips.append(cv2.imencode(".jpg", chip, [cv2.IMWRITE_JPEG_QUALITY, CHIP_BYTES_QUALITY])[1].tobytes())
        yield source, jpeg.tobytes(), chips
        i += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video-seconds", type=float, default=300.0)
    parser.add_argument("--fps", type=float, default=4.0, help="the demo camera's rate")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "broker_memory.json")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    video_s = 10.0 if args.smoke else args.video_seconds
    n_frames = int(video_s * args.fps)
    with EmbeddedBroker() as broker:
        apply_topics(AdminClient({"bootstrap.servers": broker.bootstrap_servers}), load_topic_specs())
        time.sleep(1.0)
        baseline = broker.rss_bytes()
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5, "message.max.bytes": 8 * 2**20})
        produced = faces = 0
        started = time.monotonic()
        source = ""
        for i, (source, jpeg, chips) in zip(range(n_frames), frames(args.fps)):
            records = [("lfr.frames.v1", jpeg + b"x" * 200)]
            for chip in chips:
                records.append(("lfr.faces.v1", chip + b"x" * 600))
                records.append(("lfr.embeddings.v1", chip + b"x" * 1300))
            faces += len(chips)
            for topic, value in records:
                while True:
                    try:
                        producer.produce(topic, key=b"cam-1", value=value)
                        break
                    except BufferError:
                        producer.poll(0.05)
                produced += len(value)
            if i % 50 == 0:
                producer.flush(30)
        producer.flush(60)
        elapsed = time.monotonic() - started
        time.sleep(2.0)
        final = broker.rss_bytes()
    growth = final - baseline
    per_hour = growth / video_s * 3600
    warn_bytes = EmbeddedBrokerSettings.model_fields["broker_memory_warn_mb"].default * 2**20
    result = {
        "benchmark": "broker_memory",
        "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "frames_source": source,
        "video_seconds": video_s,
        "fps": args.fps,
        "frames": n_frames,
        "faces": faces,
        "bytes_produced": produced,
        "produce_seconds": round(elapsed, 1),
        "rss_baseline_mb": round(baseline / 2**20, 1),
        "rss_final_mb": round(final / 2**20, 1),
        "rss_growth_mb": round(growth / 2**20, 1),
        "rss_growth_over_bytes_produced": round(growth / produced, 2) if produced else None,
        "growth_mb_per_hour_of_video": round(per_hour / 2**20, 0),
        "warn_bound_mb": warn_bytes // 2**20,
        "hours_of_video_until_warn_bound": round((warn_bytes - baseline) / per_hour, 2) if per_hour > 0 else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
