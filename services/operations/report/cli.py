"""`lfr report`: the transparency report for one deployment or a period, as JSON and HTML."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _day_ms(text: str, end: bool = False) -> int:
    from services.common.timefmt import parse_time_ms

    ms = parse_time_ms(text)
    if end and len(text.strip()) == 10:  # a date: --to includes the whole day
        ms += 86_400_000
    return ms


def run(args: argparse.Namespace) -> int:
    from services.common.settings import ReportSettings, load_settings

    from .build import build_report, summary
    from .render import render_html
    from .topics import read_inputs

    if args.national and (args.deployment or args.force):
        print("lfr report: --national covers every force, counts only: not with --deployment or --force", file=sys.stderr)
        return 2
    if not args.national and args.deployment is None and (args.from_date is None or args.to_date is None):
        print("lfr report: give --deployment ID, or --from DATE and --to DATE (or --national)", file=sys.stderr)
        return 2
    overrides = {"kafka_bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}
    if args.force:  # that force's topics (services/governance/forces/naming.py); it must be registered
        from services.governance.forces.naming import check_force_id

        overrides["force"] = check_force_id(args.force)
    settings = load_settings(ReportSettings, **overrides)
    try:
        from_ms = _day_ms(args.from_date) if args.from_date else None
        to_ms = _day_ms(args.to_date, end=True) if args.to_date else None
    except ValueError as exc:
        print(f"lfr report: bad date: {exc}", file=sys.stderr)
        return 2
    from services.common.progress import Progress

    if args.national or args.force:
        from services.common.settings import ForceRegistrySettings
        from services.governance.forces.store import read_registry

        registry = read_registry(load_settings(ForceRegistrySettings, **{k: v for k, v in overrides.items() if k != "force"}))
        if args.national:
            return _national(args, registry, overrides, from_ms, to_ms)
        registry.require(args.force)
    with Progress("lfr report: reading topics", unit="record") as bar:
        inputs = read_inputs(settings, bar)
    report = build_report(inputs, args.deployment, from_ms, to_ms, now_ms=int(time.time() * 1000))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"report-{args.deployment}" if args.deployment else f"report-{args.from_date}-{args.to_date}"
    stem = f"{stem}-{args.force}" if args.force else stem
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{stem}.html").write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(summary(report)))
    else:
        print(json.dumps(report, indent=2))
        print(f"written: {args.out / (stem + '.json')} and .html", file=sys.stderr)
    return 0


def national_figures(registry, overrides: dict, from_ms: int | None = None, to_ms: int | None = None, bar=None) -> dict:
    """Every registered force's report, reduced to its row of counts (services/operations/report/national.py)."""
    from services.common.settings import ReportSettings, load_settings

    from .build import build_report
    from .national import national_report
    from .topics import read_inputs

    from services.governance.forces.grants import topic_fields
    from services.governance.forces.naming import force_topic

    now_ms = int(time.time() * 1000)
    base = load_settings(ReportSettings, **overrides)  # force default's names; each force's are derived from them
    reports = {}
    for force in registry:
        settings = base.model_copy(update={field: force_topic(force.force_id, topic) for field, topic in topic_fields(base).items()})
        reports[force.force_id] = build_report(read_inputs(settings, bar), None, from_ms, to_ms, now_ms=now_ms)
    first = next(iter(reports.values()))
    return national_report(reports, first["period"], first["generated_at"])


def _national(args: argparse.Namespace, registry, overrides: dict, from_ms: int | None, to_ms: int | None) -> int:
    from services.common.progress import Progress

    with Progress("lfr report: reading every force's topics", unit="record") as bar:
        report = national_figures(registry, overrides, from_ms, to_ms, bar)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"report-national-{args.from_date or 'all'}-{args.to_date or 'all'}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps({"forces": report["forces"], "totals": report["totals"]}))
    else:
        print(json.dumps(report, indent=2))
        print(f"written: {path}", file=sys.stderr)
    return 0


def register(commands) -> None:
    report = commands.add_parser("report", help="transparency report per deployment (JSON and a static HTML page)")
    report.add_argument("--deployment", default=None, help="one deployment id")
    report.add_argument("--from", dest="from_date", default=None, help="ISO date or date-time (UTC)")
    report.add_argument("--to", dest="to_date", default=None, help="ISO date (inclusive) or date-time (exclusive)")
    report.add_argument("--out", type=Path, default=Path("var/reports"), help="folder for the JSON and HTML files")
    report.add_argument("--json", action="store_true", help="print only faces, alerts, confirmed, false_alerts, engagements, arrests")
    report.add_argument("--force", default=None, help="a registered force: its report, from its topics (default: LFR_FORCE)")
    report.add_argument("--national", action="store_true",
                        help="every registered force's deployments, faces, alerts, false_alerts and arrests, and their totals (counts only)")
    report.add_argument("--bootstrap-servers", default=None, help="overrides LFR_KAFKA_BOOTSTRAP_SERVERS")
    report.set_defaults(func=run)
