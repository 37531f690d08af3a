"""`lfr dlq list|show|replay`: inspect dead letters and re-publish chosen ones, audited."""

from __future__ import annotations

import argparse
import json
import sys

from services.common.cli_support import EXIT_FAILED as EXIT_NOTHING
from services.common.cli_support import EXIT_REFUSED, EXIT_USAGE


def register(commands: argparse._SubParsersAction) -> None:
    from services.common.cli_support import kafka_option

    dlq = commands.add_parser("dlq", help="list, show and replay dead-lettered records")
    sub = dlq.add_subparsers(dest="dlq_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        kafka_option(parser)
        parser.add_argument("--dlq-topic", default=None, help="overrides LFR_DLQ_TOPIC (default lfr.dlq.v1)")

    def filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--source-topic", help="only records dead-lettered from this topic")
        parser.add_argument("--reason", help="decode_error, unknown_schema, schema_invalid, stage_error, output_invalid, ...")
        parser.add_argument("--service", help="only records this service gave up on")
        parser.add_argument("--since", help="dead-lettered at or after: 30m, 2h, 7d ago, or an ISO 8601 time")
        parser.add_argument("--until", help="dead-lettered before: same forms as --since")

    listing = sub.add_parser("list", help="one line per dead letter (metadata only, never the payload)")
    common(listing)
    filters(listing)
    listing.add_argument("--limit", type=int, default=None, help="the first N matching records")
    listing.add_argument("--json", action="store_true", help="JSON lines")
    listing.set_defaults(func=_list)

    show = sub.add_parser("show", help="one dead letter's headers and payload description")
    common(show)
    show.add_argument("id", help="PARTITION:OFFSET in the dead-letter topic (as `list` prints)")
    show.set_defaults(func=_show)

    rep = sub.add_parser("replay", help="re-publish chosen dead letters to their source topic (audited)")
    common(rep)
    filters(rep)
    rep.add_argument("ids", nargs="*", help="PARTITION:OFFSET ids; with none, every record the filters match (needs --all)")
    rep.add_argument("--all", action="store_true", help="replay every record the filters match")
    rep.add_argument("--actor", required=True, help="who replays (recorded in the audit trail)")
    rep.add_argument("--why", required=True, help="why (recorded in the audit trail), e.g. the fix deployed")
    rep.add_argument("--dry-run", action="store_true", help="say what would be replayed; send nothing")
    rep.set_defaults(func=_replay)


def _settings(args: argparse.Namespace):
    from services.common.settings import DlqSettings, load_settings

    overrides = {}
    if args.bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = args.bootstrap_servers
    if args.dlq_topic:
        overrides["dlq_topic"] = args.dlq_topic
    return load_settings(DlqSettings, **overrides)


def _filter(args: argparse.Namespace, ids: list[str] | None = None):
    from .records import Filter, parse_when

    return Filter(
        source_topic=getattr(args, "source_topic", None),
        reason=getattr(args, "reason", None),
        service=getattr(args, "service", None),
        since_ms=parse_when(args.since) if getattr(args, "since", None) else None,
        until_ms=parse_when(args.until) if getattr(args, "until", None) else None,
        ids=frozenset(ids) if ids else None,
    )


def _read(args: argparse.Namespace, keep):
    from .store import read_dead_letters

    settings = _settings(args)
    return settings, read_dead_letters(settings, settings.dlq_topic, keep, settings.dlq_read_timeout_s)


def _list(args: argparse.Namespace) -> int:
    import itertools

    _settings_, letters = _read(args, _filter(args))
    count = 0
    if not args.json:
        print(f"{'ID':<12} {'AT':<20} {'SOURCE TOPIC':<22} {'SERVICE':<10} {'REASON':<15} {'PAYLOAD':<9} ERROR")
    for letter in itertools.islice(letters, args.limit):
        count += 1
        row = letter.summary()
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{row['id']:<12} {row['at']:<20} {row['source_topic']:<22} {row['service']:<10} {row['reason']:<15} "
                  f"{row['payload']:<9} {row['error_class']}: {row['error'][:80]}")
    if not args.json:
        print(f"{count} dead letter(s)", file=sys.stderr)
    return 0


def _show(args: argparse.Namespace) -> int:
    from services.common.errors import MessageError
    from services.common.jsonevents import decode_record

    _settings_, letters = _read(args, _filter(args, [args.id]))
    letter = next(iter(letters), None)
    if letter is None:
        print(f"lfr dlq show: no dead letter {args.id}", file=sys.stderr)
        return EXIT_NOTHING
    shown = {**letter.summary(), "key": (letter.key or b"").decode("utf-8", "replace"),
             "original_headers": [k for k, _v in letter.original_headers()]}
    # The message's type only: its body may hold a face (chips, embeddings), so it is not printed.
    try:
        shown["schema"] = decode_record(letter.value, letter.original_headers()).schema if letter.value else None
    except MessageError as exc:
        shown["schema"] = f"unreadable ({type(exc).__name__})"
    print(json.dumps(shown, indent=2))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from services.governance.audit.identity import load_signer
    from services.governance.audit.writer import AuditWriter

    from .store import replay

    if not args.ids and not args.all:
        print("lfr dlq replay: name the records (PARTITION:OFFSET ...) or pass --all with filters", file=sys.stderr)
        return EXIT_USAGE
    settings, letters = _read(args, _filter(args, args.ids))
    letters = list(letters)
    if args.ids:
        missing = set(args.ids) - {letter.id for letter in letters}
        for letter_id in sorted(missing):
            print(f"lfr dlq replay: no dead letter {letter_id} (or it does not match the filters)", file=sys.stderr)
    # Replays are audited through the chained, signed writer (the actor is the key's owner).
    writer = None if args.dry_run else AuditWriter(settings, settings.audit_topic, load_signer(settings), "dlq",
                                                   partition=settings.audit_partition)

    def audit(letter) -> None:
        assert writer is not None
        writer.write("dlq.replay", None, requested_by=args.actor, details={
            "dlq_topic": settings.dlq_topic, "dlq_id": letter.id, "source_topic": letter.source_topic,
            "source_partition": letter.source_partition, "source_offset": letter.source_offset,
            "dead_letter_reason": letter.reason, "service": letter.service, "why": args.why[:500],
        })

    result = replay(settings, settings.dlq_topic, letters, audit, dry_run=args.dry_run)
    for letter in result.replayed:
        print(json.dumps({"id": letter.id, "status": "would_replay" if args.dry_run else "replayed", "to": letter.source_topic}))
    for letter, why in result.refused:
        print(json.dumps({"id": letter.id, "status": "refused", "why": why}))
    print(f"{len(result.replayed)} {'to replay' if args.dry_run else 'replayed'}, {len(result.refused)} refused", file=sys.stderr)
    return EXIT_REFUSED if result.refused else (EXIT_NOTHING if not result.replayed else 0)
