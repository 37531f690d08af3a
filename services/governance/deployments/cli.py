"""`lfr deployment create|authorise|start|end|cancel|list|show|sweep`.

Refusals print one line per problem, each naming its field, and exit 3 (refused on purpose,
services/common/cli_support.py) with nothing written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from services.common.cli_support import EXIT_REFUSED
from services.common.timefmt import format_time_ms, parse_time_ms

from .record import Criteria, Deployment, Refused, Transition, Window


def register(commands: argparse._SubParsersAction) -> None:
    deployment = commands.add_parser("deployment", help="authorised, time-boxed LFR deployments")
    sub = deployment.add_subparsers(dest="deployment_command", required=True)
    actor_help = "who asks for this, kept in the audit as a claim (default: LFR_ACTOR, then $USER); the actor is the owner of LFR_SIGNING_KEY_FILE"

    create = sub.add_parser("create", help="create a draft deployment")
    create.add_argument("--id", required=True)
    create.add_argument("--force")
    create.add_argument("--name")
    create.add_argument("--offence", action="append", default=[], help="offence sought (repeatable)")
    create.add_argument("--sought-category", action="append", default=[], help="APP watchlist category sought (repeatable)")
    create.add_argument("--place-name")
    create.add_argument("--lat", type=float)
    create.add_argument("--lon", type=float)
    create.add_argument("--radius-m", type=float)
    create.add_argument("--polygon", help="JSON list of [lat, lon] vertices")
    create.add_argument("--start", help="ISO date-time the window opens (UTC unless an offset is given)")
    create.add_argument("--end", help="ISO date-time the window closes")
    create.add_argument("--camera", action="append", default=[], help="camera id (repeatable)")
    create.add_argument("--van", action="append", default=[], help="van serving the deployment: gets a bundle at authorisation (repeatable)")
    create.add_argument("--category", action="append", default=[], help="watchlist category allowed on the snapshot (repeatable)")
    create.add_argument("--priority", action="append", default=[], help="watchlist priority allowed (repeatable)")
    create.add_argument("--max-size", type=int, help="most entries the snapshot may hold")
    create.add_argument("--threshold", type=float, help="match threshold (cosine similarity)")
    create.add_argument("--footfall", type=float, help="expected faces per hour past the cameras")
    create.add_argument("--rationale")
    create.add_argument("--dpia", help="data protection impact assessment reference")
    create.add_argument("--eia", help="equality impact assessment reference")
    create.add_argument("--signage", action=argparse.BooleanOptionalAction, default=None, help="signage in place")
    create.add_argument("--notice-ref", help="published public notice reference")
    create.add_argument("--no-notice-reason", help="recorded reason for no published notice")
    create.add_argument("--actor", help=actor_help)
    create.set_defaults(func=_create)

    authorise = sub.add_parser("authorise", help="authorise a draft and freeze its watchlist snapshot")
    authorise.add_argument("id")
    authorise.add_argument("--officer", help="optional; must be the owner of LFR_SIGNING_KEY_FILE, whose key countersigns the "
                           "authorisation and is named on the record (not the creator)")
    authorise.add_argument("--rank", help="optional; must be the rank registered for that key (`lfr keys register`), which is "
                           "the rank recorded and checked")
    authorise.add_argument("--justification", help="required when expected false alerts per hour exceed the limit")
    authorise.set_defaults(func=_authorise)

    for name, helptext in (("start", "start an authorised deployment"), ("end", "end an active deployment")):
        parser = sub.add_parser(name, help=helptext)
        parser.add_argument("id")
        parser.add_argument("--actor", help=actor_help)
        parser.set_defaults(func=_simple)
    cancel = sub.add_parser("cancel", help="cancel a deployment")
    cancel.add_argument("id")
    cancel.add_argument("--reason", required=True)
    cancel.add_argument("--actor", help=actor_help)
    cancel.set_defaults(func=_simple)

    listing = sub.add_parser("list", help="list deployments")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_list)
    show = sub.add_parser("show", help="one deployment: record, state and snapshot manifest")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)
    sweep = sub.add_parser("sweep", help="erase snapshots whose deployment ended more than LFR_DEPLOYMENT_ERASE_AFTER_H ago")
    sweep.add_argument("--actor", help=actor_help)
    sweep.set_defaults(func=_sweep)


def _actor(args: argparse.Namespace) -> str:
    return args.actor or os.environ.get("LFR_ACTOR") or os.environ.get("USER") or "unknown"


def _admin():
    from .admin import DeploymentAdmin
    from .store import DeploymentStore

    from services.common.settings import DeploymentSettings, load_settings  # noqa: PLC0415 - pydantic: not for --help

    return DeploymentAdmin(DeploymentStore(load_settings(DeploymentSettings)))


def _refused(command: str, refusal: Refused) -> int:
    for problem in refusal.problems:
        print(f"lfr deployment {command}: refused: {problem}", file=sys.stderr)
    return EXIT_REFUSED


def draft_from_args(args: argparse.Namespace, actor: str, now_ms: int) -> Deployment:
    place = None
    if args.place_name:
        place = {"name": args.place_name}
        if args.lat is not None and args.lon is not None:
            place["point"] = {"lat": args.lat, "lon": args.lon}
        if args.radius_m is not None:
            place["radius_m"] = args.radius_m
        if args.polygon:
            place["polygon"] = json.loads(args.polygon)
    purpose = {"offences": args.offence, "categories": args.sought_category} if args.offence or args.sought_category else None
    criteria = None
    if args.category or args.priority or args.max_size:
        criteria = Criteria(tuple(args.category), tuple(args.priority), args.max_size or 0)
    notice = None
    if args.signage is not None:
        notice = {"signage": args.signage}
        if args.notice_ref:
            notice["notice_ref"] = args.notice_ref
        if args.no_notice_reason:
            notice["no_notice_reason"] = args.no_notice_reason
    window = Window(parse_time_ms(args.start), parse_time_ms(args.end)) if args.start and args.end else None
    return Deployment(
        deployment_id=args.id, revision=0, state="draft", created_by=actor, created_at_ms=now_ms,
        history=(Transition("draft", actor, now_ms),), force=args.force, name=args.name, purpose=purpose, place=place,
        window=window, cameras=tuple(args.camera), vans=tuple(args.van), criteria=criteria, match_threshold=args.threshold,
        footfall_per_hour=args.footfall, rationale=args.rationale, dpia_ref=args.dpia, eia_ref=args.eia, public_notice=notice,
    )


def _create(args: argparse.Namespace) -> int:
    from services.common.errors import MessageError

    admin = _admin()
    try:
        record = admin.create(draft_from_args(args, _actor(args), admin.clock()))
    except Refused as refusal:
        return _refused("create", refusal)
    except (MessageError, ValueError) as exc:
        print(f"lfr deployment create: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"deployment {record.deployment_id} created as a draft")
    return 0


def _authorise(args: argparse.Namespace) -> int:
    from .record import Problem

    admin = _admin()
    owner = admin.store.watchlist.signer.owner
    if args.officer and args.officer.strip().lower() != owner.strip().lower():
        return _refused("authorise", Refused((Problem("authorising_officer", f"{args.officer} is not the owner of the signing key "
                                                       f"({owner})"),)))
    try:
        result = admin.authorise(args.id, args.officer, args.rank, args.justification)
    except Refused as refusal:
        return _refused("authorise", refusal)
    d = result.deployment
    print(f"deployment {d.deployment_id} {d.state} by {d.authorisation.rank} {d.authorisation.officer}: snapshot v{d.snapshot.version} "
          f"{len(d.snapshot.subjects)} subjects, hash {d.snapshot.hash[:16]}")
    if result.excluded:
        print("entries not on the snapshot: " + ", ".join(f"{k} {v}" for k, v in sorted(result.excluded.items())))
    print(f"expected false alerts per hour: {result.expected_false_alerts_per_hour:.4g} (threshold {d.match_threshold:g}, "
          f"floor {d.authorisation.threshold_floor:g}, {len(d.snapshot.subjects)} subjects, {d.footfall_per_hour:g} faces/h; "
          f"calibration {d.authorisation.calibration})")
    return 0


def _simple(args: argparse.Namespace) -> int:
    admin = _admin()
    command = args.deployment_command
    try:
        if command == "start":
            record = admin.start(args.id, _actor(args))
        elif command == "end":
            record = admin.end(args.id, _actor(args))
        else:
            record = admin.cancel(args.id, _actor(args), args.reason)
    except Refused as refusal:
        return _refused(command, refusal)
    print(f"deployment {record.deployment_id} is {record.state}")
    return 0


def _window(d: Deployment) -> str:
    return f"{format_time_ms(d.window.start_ms)} - {format_time_ms(d.window.end_ms)}" if d.window else "-"


def _refusal_note(command: str, store) -> None:
    """Refused records are not shown; say so (the matcher audits and dead-letters them)."""
    if store.refusals.reasons:
        print(f"lfr deployment {command}: {sum(store.refusals.reasons.values())} records refused and not shown "
              f"({store.refusals.summary()})", file=sys.stderr)


def _list(args: argparse.Namespace) -> int:
    store = _admin().store
    deployments = store.read_all()
    _refusal_note("list", store)
    if args.json:
        print(json.dumps([d.to_data() for d in deployments.values()]))
        return 0
    print(f"{'DEPLOYMENT':<24} {'STATE':<10} {'WINDOW':<43} {'CAMERAS':>7} {'SUBJECTS':>8}  NAME")
    for d in deployments.values():
        subjects = len(d.snapshot.subjects) if d.snapshot else 0
        print(f"{d.deployment_id:<24} {d.state:<10} {_window(d):<43} {len(d.cameras):>7} {subjects:>8}  {d.name or ''}")
    return 0


def show_document(d: Deployment) -> dict:
    """What `show --json` prints: the record, its state and the snapshot manifest."""
    manifest = None
    if d.snapshot is not None:
        manifest = {
            "version": d.snapshot.version,
            "hash": d.snapshot.hash,
            "size": len(d.snapshot.subjects),
            "subjects": [{"subject_id": s.subject_id, "entry_version": s.entry_version} for s in d.snapshot.subjects],
            "erased_at_ms": d.snapshot.erased_at_ms,
        }
    return {"deployment_id": d.deployment_id, "state": d.state, "states": d.states_seen, "record": d.to_data(), "manifest": manifest}


def _show(args: argparse.Namespace) -> int:
    store = _admin().store
    found = store.read_all().get(args.id)
    _refusal_note("show", store)
    if found is None:
        print(f"lfr deployment show: no deployment {args.id}", file=sys.stderr)
        return 1
    document = show_document(found)
    if args.json:
        print(json.dumps(document))
        return 0
    print(json.dumps(document, indent=2))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .expiry import erase_due

    admin = _admin()
    plans = erase_due(admin.store, admin.clock(), _actor(args))
    for plan in plans:
        print(f"deployment {plan.deployment.deployment_id}: snapshot erased ({len(plan.tombstone)} entries removed, "
              f"{len(plan.rescope)} kept for other deployments)")
    if not plans:
        print("nothing to erase")
    return 0
