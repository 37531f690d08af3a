"""`lfr watchlist add|import|remove|list|purge-expired`: results as JSON lines on stdout."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .categories import CATEGORIES, PRIORITIES

EXIT_REFUSED = 3


def register(commands: argparse._SubParsersAction) -> None:
    watchlist = commands.add_parser("watchlist", help="governed watchlist enrolment and removal")
    sub = watchlist.add_subparsers(dest="watchlist_command", required=True)

    def provenance(parser: argparse.ArgumentParser, required: bool) -> None:
        parser.add_argument("--category", choices=CATEGORIES, required=required)
        parser.add_argument("--priority", choices=PRIORITIES, required=required)
        parser.add_argument("--image-source", default="", help="where the photo came from (e.g. custody system)")
        parser.add_argument("--image-captured-at", default=None, help="ISO date the photo was taken")
        parser.add_argument("--legal-basis", default="", help="the power or policy relied on")
        parser.add_argument("--added-by", default="", help="the accountable officer, as a claim kept in the audit "
                            "(the recorded actor is the owner of the signing key, LFR_SIGNING_KEY_FILE)")
        parser.add_argument("--expires", default=None, help="ISO date-time the entry stops matching")
        parser.add_argument("--deployment", action="append", default=[], help="deployment it is scoped to (repeatable)")

    add = sub.add_parser("add", help="enrol (or replace) one subject")
    add.add_argument("--subject", required=True)
    add.add_argument("--reference", required=True, help="case or warrant number")
    add.add_argument("--image", action="append", type=Path, required=True, help="enrolment photo (repeatable)")
    provenance(add, required=True)
    add.set_defaults(func=_add)

    imp = sub.add_parser("import", help="enrol many subjects from a CSV or a folder of identity folders")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path)
    source.add_argument("--folder", type=Path, help="one folder per subject; folder name = subject id")
    imp.add_argument("--reference-prefix", default="IMPORT-", help="folder import: reference = prefix + subject id")
    imp.add_argument("--max-images", type=int, default=1, help="folder import: photos per subject, first by name")
    imp.add_argument("--limit", type=int, default=None, help="folder import: first N subjects only")
    provenance(imp, required=False)
    imp.set_defaults(func=_import)

    remove = sub.add_parser("remove", help="remove a subject (tombstone) and audit it")
    remove.add_argument("--subject", required=True)
    remove.add_argument("--actor", required=True, help="who asked for it, kept in the audit as a claim (the actor is the signing key's owner)")
    remove.add_argument("--reason", required=True)
    remove.set_defaults(func=_remove)

    listing = sub.add_parser("list", help="list current entries (never embeddings)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)

    purge = sub.add_parser("purge-expired", help="tombstone every expired entry (run on a schedule)")
    purge.add_argument("--actor", default="system:expiry")
    purge.set_defaults(func=_purge)

    from services.common.cli_support import kafka_option  # noqa: PLC0415

    for parser in (add, imp, remove, listing, purge):
        kafka_option(parser)


def _admin():
    from services.common.settings import WatchlistSettings, load_settings
    from services.engine.face import FaceDetector, FaceEmbedder

    from .admin import WatchlistAdmin
    from .enrol import Enroller
    from .store import WatchlistStore
    from .thresholds import Thresholds

    settings = load_settings(WatchlistSettings)
    engine = {"cache_dir": settings.model_cache_dir, "intra_op_threads": settings.intra_op_threads}
    enroller = Enroller(FaceDetector(**engine), FaceEmbedder(**engine))
    thresholds = Thresholds.parse(settings.match_threshold_default, settings.match_thresholds)
    return WatchlistAdmin(WatchlistStore(settings), enroller, thresholds)


def _template(args: argparse.Namespace) -> dict:
    from services.common.timefmt import parse_time_ms

    return {
        "category": args.category or "",
        "priority": args.priority or "",
        "image_source": args.image_source,
        "image_captured_at_ms": parse_time_ms(args.image_captured_at) if args.image_captured_at else None,
        "legal_basis": args.legal_basis,
        "added_by": args.added_by,
        "expires_at_ms": parse_time_ms(args.expires) if args.expires else 0,
        "deployments": tuple(args.deployment),
    }


def _report(outcome) -> None:
    print(json.dumps(outcome.as_dict()), flush=True)
    if outcome.lookalikes:
        print(f"warning: {outcome.subject_id} looks like {len(outcome.lookalikes)} listed subject(s); flagged in the audit trail", file=sys.stderr)


def _add(args: argparse.Namespace) -> int:
    from .admin import Outcome
    from .enrol import EnrolmentRequest

    try:
        template = _template(args)
        images = [path.read_bytes() for path in args.image]
    except ValueError as exc:
        _report(Outcome(args.subject, "refused", "invalid_field", str(exc)))
        return EXIT_REFUSED
    except OSError as exc:
        _report(Outcome(args.subject, "refused", "unreadable_image", f"cannot read {exc.filename}"))
        return EXIT_REFUSED
    request = EnrolmentRequest(subject_id=args.subject, reference=args.reference, images=images,
                               image_names=[p.name for p in args.image], **template)
    outcome = _admin().add(request)
    _report(outcome)
    return EXIT_REFUSED if outcome.status == "refused" else 0


def _import(args: argparse.Namespace) -> int:
    import dataclasses
    import itertools

    from .admin import Outcome, requests_from_csv, requests_from_folder

    admin = _admin()
    template = _template(args)
    if args.csv:
        requests = requests_from_csv(args.csv, template)
    else:
        reference_prefix = args.reference_prefix
        requests = (
            dataclasses.replace(r, reference=reference_prefix + r.subject_id)
            for r in requests_from_folder(args.folder, {**template, "reference": ""}, args.max_images)
        )
        requests = itertools.islice(requests, args.limit)
    from services.common.progress import Progress

    counts = {"enrolled": 0, "updated": 0, "flagged": 0, "refused": 0}
    # Writes are queued and acknowledged once at the end (not flushed per subject).
    with admin.store.batch(), Progress("lfr watchlist import", total=_import_total(args), unit="subject") as bar:
        for request in requests:
            outcome = request if isinstance(request, Outcome) else admin.add(request)
            counts[outcome.status] += 1
            counts["flagged"] += bool(outcome.lookalikes)
            _report(outcome)
            bar.update()
    print(json.dumps({"summary": counts}), flush=True)
    print(f"lfr watchlist import: {counts['enrolled']} enrolled, {counts['updated']} updated, "
          f"{counts['flagged']} flagged as look-alikes, {counts['refused']} refused", file=sys.stderr)
    return EXIT_REFUSED if counts["refused"] else 0


def _import_total(args: argparse.Namespace) -> int | None:
    """Subjects to expect (for the time left): folders, or CSV rows after the header."""
    try:
        if args.folder:
            total = sum(1 for p in args.folder.iterdir() if p.is_dir())
            return min(total, args.limit) if args.limit else total
        with args.csv.open(encoding="utf-8") as handle:
            return max(0, sum(1 for line in handle if line.strip()) - 1)
    except OSError:
        return None


def _remove(args: argparse.Namespace) -> int:
    removed = _admin().remove(args.subject, args.actor, args.reason)
    print(json.dumps({"subject_id": args.subject, "status": "removed" if removed else "not_listed"}))
    return 0 if removed else 1


def _list(args: argparse.Namespace) -> int:
    from services.common.timefmt import format_time_ms

    from .admin import now_ms

    admin = _admin()
    entries = admin.list()
    now = now_ms()
    if admin.store.refusals.reasons:  # refused records are not listed; say so (the matcher reports them)
        print(f"lfr watchlist list: {sum(admin.store.refusals.reasons.values())} records refused and not listed "
              f"({admin.store.refusals.summary()})", file=sys.stderr)
    if args.json:
        for entry in entries:
            print(json.dumps({**entry.describe(), "expired": entry.is_expired(now)}))
        return 0
    print(f"{'SUBJECT':<28} {'CATEGORY':<24} {'PRI':<6} {'REFERENCE':<20} {'EXPIRES':<21} {'IMG':>3}  {'DEPLOYMENTS':<16} QUALITY")
    for e in entries:
        expiry = format_time_ms(e.expires_at_ms) + ("*" if e.is_expired(now) else "")
        print(f"{e.subject_id:<28} {e.category:<24} {e.priority:<6} {e.reference:<20} {expiry:<21} {len(e.embeddings):>3}  {','.join(e.deployments):<16} {_quality(e)}")
    print(f"{len(entries)} entries (* = expired, no longer matched)")
    return 0


def _quality(entry) -> str:
    """Per photo: ok, or its flags (below the enrolment bar but usable), for the officers."""
    return " ".join("+".join(e.quality_flags) or "ok" for e in entry.embeddings)


def _purge(args: argparse.Namespace) -> int:
    expired = _admin().purge_expired(args.actor)
    print(json.dumps({"purged": expired}))
    return 0
