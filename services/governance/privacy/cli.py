"""`lfr topics verify` and `lfr privacy audit`: the command-line faces of services/governance/privacy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _kafka_config(bootstrap: str | None) -> dict[str, str]:
    from services.common.kafka_config import client_config
    from services.common.settings import KafkaSettings, load_settings

    overrides = {"kafka_bootstrap_servers": bootstrap} if bootstrap else {}
    return client_config(load_settings(KafkaSettings, **overrides))


def cmd_topics_verify(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    from services.common.topics import load_topic_specs

    from .retention import verify

    verdict = verify(AdminClient(_kafka_config(args.bootstrap_servers)), load_topic_specs(args.config))
    if args.json:
        print(json.dumps(verdict.as_json(), indent=2))
    else:
        for note in verdict.notes:
            print(f"note: {note}")
        for topic in verdict.topics:
            print(f"{topic.topic:<24} {'ok' if topic.ok else 'FAIL':<5} promise {topic.promise_ms} ms")
            for problem in topic.problems:
                print(f"    {problem}")
    return 0 if verdict.ok else 1


def cmd_privacy_audit(args: argparse.Namespace) -> int:
    import numpy as np

    from services.common.settings import QdrantSettings, load_settings
    from services.engine.face.models import default_cache_dir
    from services.governance.watchlist.thresholds import DEFAULT_THRESHOLD

    from .audit import AuditOptions, run_audit

    qdrant = load_settings(QdrantSettings)
    data_dirs = tuple(args.data_dir) if args.data_dir else (Path("var"), default_cache_dir())
    qdrant_paths = tuple(args.qdrant_path) if args.qdrant_path else ((Path(qdrant.qdrant_path),) if qdrant.qdrant_path != ":memory:" else ())
    options = AuditOptions(
        kafka_config=_kafka_config(args.bootstrap_servers),
        data_dirs=data_dirs,
        log_paths=tuple(args.logs or ()),
        qdrant_url=qdrant.qdrant_url,
        qdrant_api_key=qdrant.qdrant_api_key.get_secret_value() if qdrant.qdrant_api_key else None,
        qdrant_paths=qdrant_paths,
        strangers=np.load(args.strangers) if args.strangers else None,
        similarity=args.similarity if args.similarity is not None else DEFAULT_THRESHOLD,
        watchlist_threshold=DEFAULT_THRESHOLD,
    )
    result = run_audit(options)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for finding in result["findings"]:
            print(f"FINDING {finding['kind']:<9} {finding['method']:<20} {finding['store']} {finding['location']}")
        print(f"{len(result['findings'])} findings; checked {len(result['checked']['topics'])} topics, "
              f"{len(result['checked']['index_collections'])} index collections, {result['checked']['files']} files, "
              f"{len(result['checked']['logs'])} logs", file=sys.stderr)
    return 1 if result["findings"] else 0


def register(commands: argparse._SubParsersAction) -> None:
    privacy = commands.add_parser("privacy", help="check that strangers' biometric data is kept nowhere")
    sub = privacy.add_subparsers(dest="privacy_command", required=True)
    audit = sub.add_parser("audit", help="read every topic, index collection, data file and log; report strangers' data")
    audit.add_argument("--bootstrap-servers", default=None, help="overrides LFR_KAFKA_BOOTSTRAP_SERVERS")
    audit.add_argument("--data-dir", type=Path, action="append", help="repeatable; default: ./var and the model cache")
    audit.add_argument("--logs", type=Path, action="append", help="a service log file or a folder of them (repeatable)")
    audit.add_argument("--qdrant-path", type=Path, action="append", help="local-mode index folder (default: LFR_QDRANT_PATH)")
    audit.add_argument("--strangers", type=Path, default=None, help=".npy of known strangers' embeddings (N x 128)")
    audit.add_argument("--similarity", type=float, default=None, help="cosine at which a vector is a stranger's (default: match threshold)")
    audit.add_argument("--json", action="store_true", help='print {"findings": [...], "checked": {...}}')
    audit.set_defaults(func=cmd_privacy_audit)
