"""``lfr``: the one command-line entry point. Subcommands import their modules lazily."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path

# Service name -> "module:function" returning an exit code. Later services register here.
SERVICES = {
    "passthrough": "services.pipeline.passthrough.service:main",
    "ingest": "services.pipeline.ingest.service:main",
    "detect": "services.pipeline.detect.service:main",
    "embed": "services.pipeline.embed.service:main",
    "matcher": "services.pipeline.matcher.service:main",
    "dispatch": "services.pipeline.dispatch.service:main",
    "review": "services.operations.review.service:main",
    "link": "services.van.link.service:main",  # the van's outcome forwarder to the core (issue #26)
    "intake": "services.van.fleet.intake_service:main",  # the core's check of what the vans forward (issue #26)
    "deployment-events": "services.governance.deployments.projector:main",  # public deployment events (issue #25)
}


def _cmd_broker(args: argparse.Namespace) -> int:
    """The embedded broker under a supervisor: restarted (topics re-applied) if it dies; memory reported."""
    from services.common.broker import EmbeddedBroker
    from services.common.broker_supervisor import BrokerSupervisor
    from services.common.settings import EmbeddedBrokerSettings, load_settings
    from services.common.topics import load_topic_specs

    settings = load_settings(EmbeddedBrokerSettings)
    supervisor = BrokerSupervisor(
        EmbeddedBroker(port=args.port, host=args.host),
        [] if args.no_topics else load_topic_specs(args.config),
        memory_warn_bytes=settings.broker_memory_warn_mb * 2**20,
        check_interval_s=settings.broker_check_interval_s,
        memory_report_interval_s=settings.broker_memory_report_interval_s,
        report=lambda line: print(line, file=sys.stderr, flush=True),
    )
    try:
        bootstrap = supervisor.start()
    except (RuntimeError, TimeoutError) as exc:
        print(f"lfr broker: {exc}", file=sys.stderr)
        return 1
    print(f"bootstrap servers: {bootstrap}", flush=True)
    print(f"export LFR_KAFKA_BOOTSTRAP_SERVERS={bootstrap}", flush=True)
    print("memory storage: topics and records live only as long as this broker process", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stop())
    signal.signal(signal.SIGINT, lambda *_: supervisor.stop())
    supervisor.run()
    print("broker stopped", flush=True)
    return 0


def _admin(args: argparse.Namespace):
    from confluent_kafka.admin import AdminClient

    from services.common.kafka_config import client_config
    from services.common.settings import KafkaSettings, load_settings

    overrides = {"kafka_bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}
    return AdminClient(client_config(load_settings(KafkaSettings, **overrides)))


def _cmd_topics_apply(args: argparse.Namespace) -> int:
    from services.common.topics import apply_topics, load_topic_specs

    specs = load_topic_specs(args.config, args.replication_factor)
    if args.force != "default" or _needs_registry(specs):  # names a force: it must be registered
        specs = _force_specs(args, specs)
    for result in apply_topics(_admin(args), specs):
        print(f"{result.name:<24} {result.action:<10} {result.detail}".rstrip())
    return 0


def _needs_registry(specs) -> bool:
    from services.governance.forces.topics import needs_registry

    return needs_registry(specs)


def _force_specs(args: argparse.Namespace, specs):
    from services.common.settings import ForceRegistrySettings, load_settings
    from services.governance.forces.store import read_registry
    from services.governance.forces.topics import check_specs, specs_for_force

    from services.governance.forces.naming import check_force_id

    platform = [spec.name for spec in specs]
    check_force_id(args.force, platform)  # a bad id is a usage error before anything is read
    settings = load_settings(ForceRegistrySettings)
    registry = read_registry(settings)
    registry.require(args.force)
    specs = specs_for_force(specs, args.force)
    check_specs(specs, registry.ids(), platform)
    return specs


def _cmd_topics_describe(args: argparse.Namespace) -> int:
    from services.common.topics import describe_topics, format_retention, load_topic_specs

    specs = load_topic_specs(args.config)
    print(f"{'TOPIC':<24} {'PARTITIONS':>10} {'RETENTION':>10} {'CLEANUP':>8} {'SEGMENT':>8}  BIOMETRIC")
    missing = 0
    biometric = {spec.name: spec.biometric for spec in specs}
    for topic in describe_topics(_admin(args), specs):
        if topic.partitions is None:
            missing += 1
            print(f"{topic.name:<24} {'missing':>10}")
            continue
        cfg = topic.config
        retention = format_retention(cfg.get("retention.ms")) if cfg.get("cleanup.policy", "delete") != "compact" else "compacted"
        print(
            f"{topic.name:<24} {topic.partitions:>10} {retention:>10} {cfg.get('cleanup.policy', '-'):>8} "
            f"{format_retention(cfg.get('segment.ms')):>8}  {'yes' if biometric[topic.name] else 'no'}"
        )
    return 1 if missing else 0


def _cmd_asyncapi(args: argparse.Namespace) -> int:
    from services.common import asyncapi

    return asyncapi.main(args.out or asyncapi.DOCUMENT, check=args.check)


def _cmd_docs(args: argparse.Namespace) -> int:
    from services.tools.docsite import render

    if args.docs_command == "publish":
        print(render.publish(args.file, args.machine, args.command_line, args.date, args.note))
        return render.main()
    return render.main(check=args.check)


def _cmd_topics_verify(args: argparse.Namespace) -> int:
    from services.governance.privacy.cli import cmd_topics_verify

    return cmd_topics_verify(args)


def _cmd_run(args: argparse.Namespace) -> int:
    module_name, function = SERVICES[args.service].split(":")
    return getattr(importlib.import_module(module_name), function)()


def _cmd_demo(args: argparse.Namespace) -> int:
    from services.tools.demo.run import main as demo_main

    return demo_main(args.data, args.seconds, args.json, args.auto_adjudicate, args.seed)


def _overlaps(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or a in b.parents or b in a.parents


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from services.tools.evaluation.plot import plot_det
    from services.tools.evaluation.run import one_line, run_eval

    if not args.data.is_dir():
        print(f"lfr eval: data folder {args.data} not found", file=sys.stderr)
        return 2
    for folder in (args.fillers, args.equity):
        if folder is not None and not folder.is_dir():
            print(f"lfr eval: folder {folder} not found", file=sys.stderr)
            return 2
    if args.fillers is not None and _overlaps(args.fillers, args.data):
        print(f"lfr eval: --fillers {args.fillers} overlaps --data {args.data}: fillers must be people who are not probes", file=sys.stderr)
        return 2
    from services.common.progress import Progress

    with Progress("lfr eval", unit="image") as bar:
        result = run_eval(args.data, seed=args.seed, limit=args.limit, threads=args.threads,
                          progress=lambda msg: print(msg, file=sys.stderr, flush=True), bar=bar, enrol_images=args.enrol_images,
                          fillers=args.fillers, equity=args.equity, embedding_cache=args.embedding_cache,
                          operating_threshold=args.operating_threshold, alignment=args.alignment)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_det(result, args.out.with_suffix(".png"))
    if "equity" in result:
        from services.tools.evaluation.plot import plot_equity

        plot_equity(result["equity"], args.out.with_name(args.out.stem + "-equity.png"))
    print(one_line(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from services.common.cli_support import kafka_option
    from services.common.metrics import build_version

    parser = argparse.ArgumentParser(prog="lfr", description="OpenLFR live facial recognition pipeline",
                                     epilog="exit codes: 0 ok, 1 negative answer or internal error, 2 usage or settings, "
                                            "3 refused, 4 Kafka, 5 Qdrant, 6 file, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"lfr {build_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    broker = commands.add_parser("broker", help="run the embedded Kafka-protocol broker (tests, demo)")
    broker.add_argument("--port", type=int, default=9092)
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--config", type=Path, default=None, help="topics file applied at start and after a restart")
    broker.add_argument("--no-topics", action="store_true", help="start empty (do not apply topics.toml)")
    broker.set_defaults(func=_cmd_broker)

    topics = commands.add_parser("topics", help="create or inspect the pipeline's topics")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True)
    for name, func, helptext in (
        ("apply", _cmd_topics_apply, "create or update every topic from the config file (idempotent)"),
        ("describe", _cmd_topics_describe, "print each topic with its partitions and retention"),
        ("verify", _cmd_topics_verify, "fail, naming the setting, if biometric data can outlive its retention promise"),
    ):
        sub = topic_commands.add_parser(name, help=helptext)
        sub.add_argument("--config", type=Path, default=None, help="topics TOML (default: the packaged topics.toml)")
        sub.add_argument("--bootstrap-servers", default=None, help="overrides LFR_KAFKA_BOOTSTRAP_SERVERS")
        if name == "apply":
            sub.add_argument("--replication-factor", type=int, default=None)
            sub.add_argument("--force", default="default", help="a registered force: create its topics (lfr.<force>.<name>.v<N>)")
        if name == "verify":
            sub.add_argument("--json", action="store_true", help="one verdict per topic as JSON")
        sub.set_defaults(func=func)

    contract = commands.add_parser("asyncapi", help="write docs/asyncapi.yaml (every topic) from topics.toml, schemas/ and access.toml")
    contract.add_argument("--out", type=Path, default=None, help="where to write (default: docs/asyncapi.yaml of this checkout)")
    contract.add_argument("--check", action="store_true", help="exit 1 if the file differs from what would be generated")
    contract.set_defaults(func=_cmd_asyncapi)

    docs = commands.add_parser("docs", help="write the site's generated pages (settings, metrics, alert rules, dashboards, figures)")
    docs.add_argument("--check", action="store_true", help="exit 1 if a generated page differs from what would be written")
    docs.set_defaults(func=_cmd_docs, docs_command=None)
    docs_commands = docs.add_subparsers(dest="docs_command")
    publish = docs_commands.add_parser("publish", help="copy a results JSON into docs/results/ with its date and machine")
    publish.add_argument("file", type=Path, help="e.g. tests/results/faults.json or benchmarks/results/matcher.json")
    publish.add_argument("--machine", required=True, help="the machine of the run, e.g. '2 cores, quiet'")
    publish.add_argument("--command", dest="command_line", required=True, help="the command that produced it")
    publish.add_argument("--date", default=None, help="default: the JSON's timestamp, else the file's time")
    publish.add_argument("--note", default="", help="a caveat printed with the table")

    run = commands.add_parser("run", help="run one service until SIGTERM")
    run.add_argument("service", choices=sorted(SERVICES))
    kafka_option(run)
    run.set_defaults(func=_cmd_run)

    from services.pipeline.ingest.cli import register as register_cameras
    from services.governance.watchlist.cli import register as register_watchlist

    from services.governance.privacy.cli import register as register_privacy

    register_watchlist(commands)
    register_cameras(commands)
    register_privacy(commands)
    from services.governance.deployments.cli import register as register_deployments

    register_deployments(commands)
    from services.operations.dlq.cli import register as register_dlq

    register_dlq(commands)

    from services.operations.report.cli import register as register_report
    from services.operations.review.cli import register as register_users

    register_users(commands)
    register_report(commands)

    from services.governance.audit.cli import register as register_security  # lfr keys, lfr audit

    register_security(commands)
    from services.governance.forces.cli import register as register_forces  # lfr forces

    register_forces(commands)

    from services.van.fleet.cli import register as register_fleet  # lfr van, lfr bundle

    register_fleet(commands)

    evaluate = commands.add_parser("eval", help="open-set identification accuracy on a folder of identity folders")
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--out", type=Path, required=True, help="JSON result; a DET plot PNG is written beside it")
    evaluate.add_argument("--seed", type=int, default=7)
    evaluate.add_argument("--limit", type=int, default=None, help="first N identity folders only (quick runs)")
    evaluate.add_argument("--threads", type=int, default=2)
    evaluate.add_argument("--enrol-images", type=int, default=1, choices=range(1, 6), metavar="N",
                          help="enrol each subject with up to N images (template: best score over them)")
    evaluate.add_argument("--fillers", type=Path, default=None, help="face folder of extra non-mated subjects to grow the watchlist")
    evaluate.add_argument("--equity", type=Path, default=None, help="UTKFace-named non-mated probes: FPIR per demographic group")
    evaluate.add_argument("--embedding-cache", type=Path, default=None, help="SQLite file (outside the repository) reusing embeddings")
    evaluate.add_argument("--operating-threshold", type=float, default=None, help="default: the model calibration's floor")
    evaluate.add_argument("--alignment", default="plain", choices=("plain", "antialias", "redetect", "redetect+antialias"),
                          help="chip alignment experiment (services/tools/evaluation/faces.py ALIGNMENTS); plain is the product's")
    evaluate.set_defaults(func=_cmd_eval)

    demo = commands.add_parser("demo", help="run the local demo on embedded defaults")
    demo.add_argument("--data", type=Path, default=None, help="identity folders (default: LFR_DATA_DIR, then ../shared/datasets/lfw-dev)")
    demo.add_argument("--seconds", type=float, default=60.0)
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--seed", type=int, default=7, help="chooses the cast and the crowd's walks (default 7)")
    demo.add_argument("--auto-adjudicate", action=argparse.BooleanOptionalAction, default=True,
                      help="decide each alert in the review console from the synthetic camera's ground truth")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from services.common import cli_support

    args = build_parser().parse_args(argv)
    cli_support.apply_kafka_option(args)
    cli_support.quiet_client_logs(args.command)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return cli_support.EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line naming the cause, an exit code by family
        return cli_support.report_error(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
