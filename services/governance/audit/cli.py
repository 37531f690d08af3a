"""`lfr keys create|list|revoke` and `lfr audit verify|show|reconcile`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from pathlib import Path

from services.common.cli_support import EXIT_REFUSED


def register(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="signing keys of the people and services that change the watchlist")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="new Ed25519 key: private key encrypted on disk, public key into the keyring")
    create.add_argument("--owner", required=True, help="who signs with it, as the audit will name them (e.g. 'PC 1234 J Smith')")
    create.add_argument("--out", type=Path, default=None, help="private key file (default: var/keys/<key id>.key.json)")
    create.add_argument("--keyring", type=Path, default=None, help="keyring to trust it in (default: LFR_KEYRING_FILE)")
    create.set_defaults(func=_keys_create)
    listing = keys_sub.add_parser("list", help="the keyring's keys, revoked ones marked")
    listing.add_argument("--keyring", type=Path, default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_keys_list)
    register = keys_sub.add_parser("register", help="record a key owner's rank, role and force, signed by a key administrator "
                                   "(LFR_SIGNING_KEY_FILE) and audited; authorisation believes only a registered rank")
    register.add_argument("key_id")
    register.add_argument("--rank", default="", help="e.g. superintendent (UK police ranks); empty for a service")
    register.add_argument("--role", required=True, help="key_admin, authorising_officer, operator or service")
    register.add_argument("--force", default="", help="the owner's force (optional until the force registry exists)")
    register.add_argument("--keyring", type=Path, default=None)
    register.set_defaults(func=_keys_register)
    revoke = keys_sub.add_parser("revoke", help="stop trusting a key (every record it signed is refused from then on)")
    revoke.add_argument("key_id")
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--keyring", type=Path, default=None)
    revoke.set_defaults(func=_keys_revoke)

    audit = commands.add_parser("audit", help="verify and read the tamper-evident audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check every partition's hash chain and signatures; exit 1 naming the first bad record")
    verify.add_argument("--topic", default=None, help="default: LFR_AUDIT_TOPIC")
    verify.add_argument("--force", default=None, help="verify this force's chain (lfr.<force>.audit.v2): every record names the "
                        "force and no other force's key signed one")
    verify.add_argument("--anchor", default=None, help="a head hash printed earlier: fail if it is no longer in the chain (truncation)")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_audit_verify)
    rec = audit_sub.add_parser("reconcile", help="changes in a signed topic without an audit record, and audited changes never applied")
    rec.add_argument("--topic", required=True, help="the changed topic, e.g. lfr.watchlist.v1 or lfr.deployments.v1")
    rec.add_argument("--audit-topic", default=None, help="default: LFR_AUDIT_TOPIC")
    rec.set_defaults(func=_audit_reconcile)
    migrate = audit_sub.add_parser("migrate", help="copy an earlier audit topic (lfr.audit.v1) into the current one, record for record")
    migrate.add_argument("--from", dest="source", required=True, help="the old audit topic, e.g. lfr.audit.v1")
    migrate.add_argument("--to", dest="target", default=None, help="default: LFR_AUDIT_TOPIC")
    migrate.set_defaults(func=_audit_migrate)
    show = audit_sub.add_parser("show", help="audit records, filtered")
    show.add_argument("--topic", default=None)
    show.add_argument("--subject", default=None)
    show.add_argument("--deployment", default=None)
    show.add_argument("--actor", default=None, help="key owner (or the name a record says it was requested by)")
    show.add_argument("--action", default=None, help="action prefix, e.g. watchlist. or deployment.authorise")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_audit_show)


def _settings():
    from services.common.settings import AuditSettings, load_settings

    return load_settings(AuditSettings)


def _keyring_path(args: argparse.Namespace, settings) -> Path:
    path = args.keyring or settings.keyring_file
    if path is None:
        raise SystemExit("lfr keys: give --keyring or set LFR_KEYRING_FILE")
    return Path(path)


def _passphrase(settings, confirm: bool) -> str:
    if settings.signing_key_passphrase is not None:
        return settings.signing_key_passphrase.get_secret_value()
    if not sys.stdin.isatty():
        raise SystemExit("lfr keys: set LFR_SIGNING_KEY_PASSPHRASE or run from a terminal to be asked for it")
    first = getpass.getpass("passphrase for the new key: ")
    if confirm and getpass.getpass("again: ") != first:
        raise SystemExit("lfr keys: the passphrases differ")
    return first


def _keys_create(args: argparse.Namespace) -> int:
    from services.common.signing import Keyring, KeyFileError, Signer

    settings = _settings()
    ring_path = _keyring_path(args, settings)
    ring = Keyring.load(ring_path) if ring_path.exists() else Keyring(ring_path)
    signer = Signer.generate(args.owner)
    out = args.out or Path("var/keys") / f"{signer.key_id}.key.json"
    try:
        signer.save(out, _passphrase(settings, confirm=True))
    except (KeyFileError, FileExistsError) as exc:
        print(f"lfr keys create: {exc}", file=sys.stderr)
        return 1
    ring.add(signer, int(time.time() * 1000))
    ring.save()
    print(json.dumps({"key_id": signer.key_id, "owner": signer.owner, "private_key_file": str(out), "keyring": str(ring_path)}))
    print(f"set LFR_SIGNING_KEY_FILE={out} to sign with it; keep the passphrase secret", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from services.common.signing import Keyring

    ring = Keyring.load(_keyring_path(args, _settings()))
    for key in ring.keys():
        if args.json:
            print(json.dumps({k: v for k, v in asdict(key).items() if k != "public_key"}))
        else:
            state = f"revoked ({key.revoked_reason})" if key.revoked_at_ms is not None else "trusted"
            registered = ring.registration(key.key_id)
            who = f"{registered.role} {registered.rank}".strip() if registered is not None else "unregistered"
            print(f"{key.key_id}  {key.owner:<32} {state:<10} {who}")
    return 0


def _keys_register(args: argparse.Namespace) -> int:
    from services.common.signing import Keyring, KeyFileError
    from services.governance.deployments.record import rank_level

    from .identity import load_signer
    from .writer import AuditWriter

    if args.rank and rank_level(args.rank) is None:
        print(f"lfr keys register: unknown rank {args.rank!r}", file=sys.stderr)
        return 2
    settings = _settings()
    ring = Keyring.load(_keyring_path(args, settings))
    signer = load_signer(settings)
    try:
        registered = ring.register(args.key_id, args.rank.strip().lower(), args.role, args.force, signer)
    except KeyFileError as exc:
        print(f"lfr keys register: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    writer = AuditWriter(settings, settings.audit_topic, signer, "keys", partition=settings.audit_partition)
    writer.write("keys.register", None, {"key_id": registered.key_id, "owner": registered.owner, "rank": registered.rank,
                                          "role": registered.role, "force": registered.force})
    writer.close()
    ring.save()  # after the audit record: no registration without its audit record
    print(json.dumps({"key_id": registered.key_id, "owner": registered.owner, "rank": registered.rank, "role": registered.role,
                      "force": registered.force, "registered_by": registered.registered_by}))
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from services.common.signing import Keyring, KeyFileError

    from .identity import load_signer
    from .writer import AuditWriter

    settings = _settings()
    ring = Keyring.load(_keyring_path(args, settings))
    try:
        revoked = ring.revoke(args.key_id, args.reason, int(time.time() * 1000))
    except KeyFileError as exc:
        print(f"lfr keys revoke: {exc}", file=sys.stderr)
        return 1
    signer = load_signer(settings)  # the revocation is audited, signed by whoever revokes
    if signer.key_id == revoked.key_id:
        print("lfr keys revoke: refused: sign the revocation with another trusted key (LFR_SIGNING_KEY_FILE)", file=sys.stderr)
        return EXIT_REFUSED
    writer = AuditWriter(settings, settings.audit_topic, signer, "keys", partition=settings.audit_partition)
    writer.write("keys.revoke", None, {"key_id": revoked.key_id, "owner": revoked.owner, "reason": args.reason})
    writer.close()
    ring.save()
    print(json.dumps({"key_id": revoked.key_id, "owner": revoked.owner, "revoked": True}))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from .chain import verify_chain
    from .identity import load_keyring
    from .reader import read_audit

    from services.governance.forces.naming import check_force_id, force_topic, topic_force

    settings = _settings()
    topic = args.topic or settings.audit_topic
    if args.force:  # that force's chain, under its prefix (services/governance/forces/naming.py)
        topic = args.topic or force_topic(check_force_id(args.force), type(settings).model_fields["audit_topic"].default)
    force = args.force or topic_force(topic)
    keyring = load_keyring(settings)
    failed = False
    for partition, positions in read_audit(settings, topic).items():
        report = verify_chain(positions, keyring, anchor=args.anchor, force=force)
        failed |= not report.ok
        if args.json:
            print(json.dumps({"topic": topic, "partition": partition, "ok": report.ok, "records": report.records,
                              "head_hash": report.head_hash, "head_seq": report.head_seq, "forks": report.forks,
                              "unjoined_offsets": list(report.unjoined),
                              "problem": None if report.ok else {"offset": report.problem.offset, "seq": report.problem.seq,
                                                                 "kind": report.problem.kind, "detail": report.problem.detail}}))
        elif report.ok:
            forks = f" ({report.forks} forks from concurrent writers, joined)" if report.forks else ""
            print(f"{topic}[{partition}]: {report.records} records, chain intact{forks}, head {report.head_hash}")
        else:
            print(f"{topic}[{partition}]: FAILED at {report.problem.describe()} ({report.records} records verified before it)")
        if report.unjoined and not args.json:
            print(f"{topic}[{partition}]: warning: {len(report.unjoined)} records on a fork nobody joined (a writer stopped "
                  f"between a raced append and its join), offsets {list(report.unjoined)[:10]}", file=sys.stderr)
    return 1 if failed else 0


def _audit_reconcile(args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from services.common.kafka_config import client_config
    from services.common.signing import AUDIT_HASH_HEADER, headers_dict

    from .reader import read_audit
    from .reconcile import reconcile

    settings = _settings()
    consumer = Consumer({**client_config(settings), "group.id": "lfr-audit-cli", "enable.auto.commit": False, "enable.partition.eof": True})
    changes = []
    try:
        partitions = consumer.list_topics(args.topic, timeout=30).topics[args.topic].partitions
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
        open_partitions = set(partitions)
        while open_partitions:
            message = consumer.poll(5)
            if message is None:
                break
            if message.error() is not None:
                open_partitions.discard(message.partition())
                continue
            changes.append(((message.key() or b"").decode("utf-8", "replace"), headers_dict(message.headers()).get(AUDIT_HASH_HEADER, "")))
    finally:
        consumer.close()
    audit = [p for positions in read_audit(settings, args.audit_topic or settings.audit_topic).values() for p in positions]
    findings = reconcile(args.topic, changes, audit)
    for finding in findings:
        print(json.dumps({"kind": finding.kind, "key": finding.key, "detail": finding.detail}))
    print(f"{len(changes)} changes, {len(findings)} findings", file=sys.stderr)
    return 1 if findings else 0


def _audit_migrate(args: argparse.Namespace) -> int:
    """Copy each partition of the old trail, in offset order, to the same partition of the new
    topic (plain JSON CloudEvents). The chain's hashes and signatures cover the record, not the
    wire bytes, so the copy verifies with the same head hashes and every ``lfr_audit_hash`` of a
    signed change still resolves. Refused (exit 1, nothing written) when the old chain does not
    verify or the new topic's partition already holds records (the copy must come first)."""
    from confluent_kafka import Producer

    from services.common.jsonevents import encode
    from services.common.kafka_config import producer_config

    from .chain import verify_chain
    from .identity import load_keyring
    from .reader import read_audit
    from .writer import AUDIT_SCHEMA

    settings = _settings()
    target = args.target or settings.audit_topic
    if target == args.source:
        print("lfr audit migrate: --from and --to name the same topic", file=sys.stderr)
        return 2
    keyring = load_keyring(settings)
    old = read_audit(settings, args.source)
    heads = {}
    for partition, positions in old.items():
        report = verify_chain(positions, keyring)
        if not report.ok:
            print(f"lfr audit migrate: {args.source}[{partition}] does not verify, nothing copied: {report.problem.describe()}",
                  file=sys.stderr)
            return 1
        heads[partition] = report.head_hash
    try:
        new = read_audit(settings, target)
    except RuntimeError as exc:  # not created yet: `lfr topics apply` first
        print(f"lfr audit migrate: {exc}, nothing copied", file=sys.stderr)
        return 1
    for partition in old:
        if partition not in new or new[partition]:
            why = "does not exist" if partition not in new else "already holds records"
            print(f"lfr audit migrate: {target}[{partition}] {why}, nothing copied", file=sys.stderr)
            return 1
    producer = Producer(producer_config(settings))
    for partition, positions in old.items():
        for position in positions:
            record = position.record
            value, headers = encode(AUDIT_SCHEMA, record)
            producer.produce(target, key=str(record.get("subject_id") or record["actor"]).encode(), value=value,
                             headers=headers, partition=partition)
        if producer.flush(60):
            print(f"lfr audit migrate: {target}[{partition}] not acknowledged", file=sys.stderr)
            return 4
    copied = read_audit(settings, target)
    failed = False
    for partition, positions in copied.items():
        if partition not in old:
            continue
        report = verify_chain(positions, keyring)
        same = report.ok and report.head_hash == heads[partition] and report.records == len(old[partition])
        failed |= not same
        print(f"{args.source}[{partition}] -> {target}[{partition}]: {report.records} records, "
              + (f"head {report.head_hash} (unchanged)" if same else "MISMATCH"))
    return 1 if failed else 0


def _audit_show(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from .reader import matches, read_audit

    from .chain import verify_chain
    from .identity import load_keyring

    settings = _settings()
    topic = args.topic or settings.audit_topic
    keyring = load_keyring(settings)
    failed = False
    for partition, positions in read_audit(settings, topic).items():
        report = verify_chain(positions, keyring)  # shown: only what verifies, up to the first bad record
        if not report.ok:
            failed = True
            print(f"lfr audit show: {topic}[{partition}]: records from offset {report.problem.offset} not shown: "
                  f"{report.problem.describe()}", file=sys.stderr)
        for position in positions:
            if not report.ok and position.offset >= report.problem.offset:
                break
            record = position.record
            if not matches(record, args.subject, args.deployment, args.actor, args.action):
                continue
            if args.json:
                print(json.dumps({"partition": partition, "offset": position.offset,
                                  **{k: v for k, v in record.items() if k != "signature"}}))
                continue
            when = datetime.fromtimestamp(record["at_ms"] / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            details = " ".join(f"{k}={v}" for k, v in sorted((record.get("details") or {}).items()))
            print(f"{when}  {record.get('actor', '?'):<24} {record['action']:<28} {record.get('subject_id', '-'):<20} {details}")
    return 1 if failed else 0


