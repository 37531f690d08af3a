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

    if args.deployment is None and (args.from_date is None or args.to_date is None):
        print("lfr report: give --deployment ID, or --from DATE and --to DATE", file=sys.stderr)
        return 2
    overrides = {"kafka_bootstrap_servers": args.bootstrap_servers} if args.bootstrap_servers else {}
    settings = load_settings(ReportSettings, **overrides)
    try:
        from_ms = _day_ms(args.from_date) if args.from_date else None
        to_ms = _day_ms(args.to_date, end=True) if args.to_date else None
    except ValueError as exc:
        print(f"lfr report: bad date: {exc}", file=sys.stderr)
        return 2
    from services.common.progress import Progress

    with Progress("lfr report: reading topics", unit="record") as bar:
        inputs = read_inputs(settings, bar)
    report = build_report(inputs, args.deployment, from_ms, to_ms, now_ms=int(time.time() * 1000))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"report-{args.deployment}" if args.deployment else f"report-{args.from_date}-{args.to_date}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / f"{stem}.html").write_text(render_html(report), encoding="utf-8")
    if args.json:
        print(json.dumps(summary(report)))
    else:
        print(json.dumps(report, indent=2))
        print(f"written: {args.out / (stem + '.json')} and .html", file=sys.stderr)
    return 0


def register(commands) -> None:
    report = commands.add_parser("report", help="transparency report per deployment (JSON and a static HTML page)")
    report.add_argument("--deployment", default=None, help="one deployment id")
    report.add_argument("--from", dest="from_date", default=None, help="ISO date or date-time (UTC)")
    report.add_argument("--to", dest="to_date", default=None, help="ISO date (inclusive) or date-time (exclusive)")
    report.add_argument("--out", type=Path, default=Path("var/reports"), help="folder for the JSON and HTML files")
    report.add_argument("--json", action="store_true", help="print only faces, alerts, confirmed, false_alerts, engagements, arrests")
    report.add_argument("--bootstrap-servers", default=None, help="overrides LFR_KAFKA_BOOTSTRAP_SERVERS")
    report.set_defaults(func=run)
