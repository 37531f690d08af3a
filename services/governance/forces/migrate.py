"""`lfr forces migrate --to F`: a single-force installation (force ``default``, today's topic
names) becomes registered force F, with no entry, deployment, audit record or report figure lost.

What moves, in this order (nothing is deleted: the old topics stay the original until the
operator drops them):

1. the audit trail, record for record with its hashes (``lfr audit migrate``), so F's chain
   starts with the installation's whole history and `lfr audit verify --force F` holds;
2. every verified watchlist entry, re-published on F's topic carrying F, audited on F's chain
   (``watchlist.migrate``) and signed by the migrating officer's key, which must be registered
   for F (an entry's version, and so every snapshot naming it, is unchanged);
3. every verified deployment, re-published carrying F (its countersignature does not cover the
   force, so it stands, but the countersigning key must be registered for F: re-register the
   force's officers' keys first); a draft is skipped unless the migrating officer created it
   (a draft must be signed by its creator);
4. alerts, adjudications, counts and sealed evidence, each stamped with F (headers kept).

Refused before anything is written (exit 3): F not registered, F's topics not empty, the
migrating key or an authorising key not registered for F.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Callable

from confluent_kafka import Producer

from services.common.errors import LfrError

from .naming import DEFAULT_FORCE, check_force_id, force_topic

logger = logging.getLogger(__name__)
#: the report's event topics (ReportSettings / ReviewSettings field -> schema), copied stamped
EVENT_TOPICS = {"alerts_topic": "lfr.alerts.v3", "adjudications_topic": "lfr.adjudications.v3", "counts_topic": "lfr.counts.v2"}


class MigrationRefused(LfrError):
    """Nothing was written: the reason names what to do first (exit 3)."""

    exit_code = 3


def _target(settings, force: str):
    """``settings`` with every topic moved to force ``force``'s name (from the field's default)."""
    from .grants import topic_fields  # noqa: PLC0415

    fields = type(settings).model_fields
    return settings.model_copy(update={"force": force, **{name: force_topic(force, fields[name].default)
                                                          for name in topic_fields(settings) if name != "dlq_topic"}})


def _count(settings, topic: str) -> int:
    from services.operations.report.topics import read_records  # noqa: PLC0415

    return len(read_records(settings, topic, settings.report_read_timeout_s))


def migrate(force: str, *, out: Callable[[str], None] = print) -> dict:
    from services.governance.audit.identity import load_keyring  # noqa: PLC0415
    from services.common.settings import DeploymentSettings, ForceRegistrySettings, ReportSettings, ReviewSettings, load_settings  # noqa: PLC0415
    from services.governance.deployments.store import DeploymentStore  # noqa: PLC0415
    from services.governance.watchlist.store import WatchlistStore  # noqa: PLC0415

    from .keys import foreign_key, reading_history_for  # noqa: PLC0415
    from .store import read_registry  # noqa: PLC0415

    check_force_id(force)
    if force == DEFAULT_FORCE:
        raise MigrationRefused("an installation is force default already: nothing to move")
    try:
        read_registry(load_settings(ForceRegistrySettings)).require(force)
    except LfrError as exc:
        raise MigrationRefused(str(exc)) from None
    source = load_settings(DeploymentSettings, force=DEFAULT_FORCE)
    events = load_settings(ReportSettings, force=DEFAULT_FORCE)
    evidence = load_settings(ReviewSettings, force=DEFAULT_FORCE)
    target, target_events, target_evidence = _target(source, force), _target(events, force), _target(evidence, force)
    copies = {target_events.alerts_topic: events.alerts_topic, target_events.adjudications_topic: events.adjudications_topic,
              target_events.counts_topic: events.counts_topic, target_evidence.evidence_topic: evidence.evidence_topic}
    for topic in (target.watchlist_topic, target.deployments_topic, *copies):
        if _count(events, topic):
            raise MigrationRefused(f"{topic} already holds records: force {force} is not empty, nothing copied")

    keyring = load_keyring(source)
    with reading_history_for(force):  # the history was signed by keys now registered for F
        entries = WatchlistStore(source).read_all()
        deployments = DeploymentStore(source).read_all()
    store = DeploymentStore(target)
    signer = store.watchlist.signer
    problems = []
    if foreign_key(keyring, signer.key_id, force, registered_only=True):
        problems.append(f"the migrating key {signer.key_id} ({signer.owner}) is not registered for force {force}")
    for d in deployments.values():
        if d.authorisation is not None and foreign_key(keyring, d.authorisation.key_id, force, registered_only=True):
            problems.append(f"deployment {d.deployment_id}: its authorising key {d.authorisation.key_id} is not registered for force {force}")
    if problems:
        raise MigrationRefused("; ".join(problems) + f" (lfr keys register KEY --force {force}), nothing copied")

    summary: dict = {"to": force}
    from services.governance.audit.cli import _audit_migrate  # noqa: PLC0415 - the one copy of a chain that keeps its hashes

    if _audit_migrate(argparse.Namespace(source=source.audit_topic, target=target.audit_topic)) != 0:
        raise MigrationRefused(f"the audit trail could not be copied to {target.audit_topic} (above)")
    summary["audit"] = sum(1 for _ in _records(events, source.audit_topic))

    with store.watchlist.batch():
        for entry in entries.values():
            store.watchlist.publish(entry, "watchlist.migrate", {"from": source.watchlist_topic})
    summary["watchlist"] = len(entries)
    moved, skipped = 0, []
    for d in deployments.values():
        if d.state == "draft" and d.created_by != signer.owner:
            skipped.append(d.deployment_id)
            continue
        store.publish(dataclasses.replace(d, force=force))
        moved += 1
    summary["deployments"], summary["drafts_skipped"] = moved, skipped

    producer = Producer(_producer_config(events))
    for target_topic, source_topic in copies.items():
        label = target_topic.removeprefix(f"lfr.{force}.").rsplit(".v", 1)[0]  # alerts, adjudications, counts, evidence
        summary[label] = _copy_stamped(producer, events, source_topic, target_topic, force)
    if producer.flush(60):
        raise LfrError(f"the broker did not acknowledge the copies to force {force}'s topics")

    found_entries = WatchlistStore(target).read_all()
    found_deployments = DeploymentStore(target).read_all()
    if len(found_entries) != len(entries) or len(found_deployments) != moved:
        raise LfrError(f"force {force}'s readers accept {len(found_entries)} of {len(entries)} entries and "
                       f"{len(found_deployments)} of {moved} deployments")
    out(json.dumps(summary))
    return summary


def _producer_config(settings) -> dict:
    from services.common.kafka_config import producer_config  # noqa: PLC0415

    return producer_config(settings)


def _records(settings, topic: str):
    from services.operations.report.topics import read_records  # noqa: PLC0415

    return read_records(settings, topic, 60.0)


def _copy_stamped(producer: Producer, settings, source: str, target: str, force: str) -> int:
    """Each record of ``source`` onto ``target`` carrying ``force`` (same key and headers; a
    tombstone stays one). A record naming another force already is not copied (it was refused)."""
    from services.common import envelope, jsonevents  # noqa: PLC0415

    from .place import record_force, stamp  # noqa: PLC0415

    copied = 0
    for record in _records(settings, source):
        value = record.value()
        if value is not None:
            decoded = jsonevents.decode_record(value, record.headers())
            if record_force(decoded.data) != DEFAULT_FORCE:
                continue
            data = stamp(dict(decoded.data), force)
            if jsonevents.is_json(decoded.schema):
                value, _ = jsonevents.encode(decoded.schema, data)
            else:
                value = envelope.encode(decoded.schema, data)
        producer.produce(target, key=record.key(), value=value, headers=record.headers() or None)
        producer.poll(0)
        copied += 1
    return copied
