"""Reads the report's inputs from the topics, each to its end (no consumer group)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.governance.audit.identity import load_keyring
from services.governance.audit.index import AuditIndex
from services.governance.audit.refusals import RefusalTally
from services.common.envelope import decode
from services.common.jsonevents import decode_record
from services.common.kafka_config import client_config
from services.common.progress import Progress
from services.common.topic_reader import TopicMissing, read_to_end
from services.governance.deployments.verified import VerifiedDeployments
from services.governance.forces import place
from services.governance.watchlist.verified import VerifiedWatchlist, fold

from .deployments import DeploymentFacts, facts_from_record


@dataclass
class ReportInputs:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    adjudications: list[dict[str, Any]] = field(default_factory=list)
    counts: list[dict[str, Any]] = field(default_factory=list)
    watchlist_scopes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # subject -> deployments
    deployments: dict[str, DeploymentFacts] = field(default_factory=dict)


def read_topic(settings, topic: str, timeout_s: float, bar: Progress | None = None) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record of ``topic`` in partition order; [] when the topic does not exist."""
    return [(record.key(), record.value()) for record in read_records(settings, topic, timeout_s, bar)]


def read_records(settings, topic: str, timeout_s: float, bar: Progress | None = None) -> list:
    """Every record of ``topic`` in partition order; [] when the topic does not exist.

    ``bar`` (services/common/progress.py) grows by the topic's record count and advances as they arrive."""
    try:
        return list(read_to_end(client_config(settings), topic, group_id="lfr-report", timeout_s=timeout_s, on_progress=_progress(bar)))
    except TopicMissing:
        return []


def read_bodies(settings, topic: str, schema: str, timeout_s: float, bar: Progress | None = None) -> list[dict[str, Any]]:
    """The ``schema`` messages of ``topic`` (plain JSON CloudEvents or envelopes, by content-type); others skipped."""
    records = read_records(settings, topic, timeout_s, bar)
    return _bodies(((record.value(), record.headers()) for record in records), schema, topic)


def _progress(bar: Progress | None):
    base = (bar.total or 0) if bar is not None else 0
    counted = 0

    def progress(seen: int, total: int) -> None:
        nonlocal counted
        if bar is not None:
            bar.set_total(base + total)  # total grows past the watermarks when Tansu reports them short
            bar.update(seen - counted)
            counted = seen

    return progress


def _bodies(records, schema: str, topic: str | None = None) -> list[dict[str, Any]]:
    """Another force's records on ``topic`` are left out and counted (services/governance/forces/place.py)."""
    out = []
    for value, headers in records:
        if value is None:
            continue
        try:
            envelope = decode_record(value, headers)
        except Exception:  # noqa: BLE001 - the report counts only what validates
            continue
        if envelope.schema != schema:
            continue
        if topic is not None:
            try:
                place.check_topic(topic, schema, envelope.data, "report")
            except place.ForceMismatch:
                continue
        out.append(envelope.data)
    return out


def read_inputs(settings, bar: Progress | None = None) -> ReportInputs:
    timeout = settings.report_read_timeout_s
    inputs = ReportInputs(
        alerts=read_bodies(settings, settings.alerts_topic, "lfr.alerts.v3", timeout, bar),
        adjudications=read_bodies(settings, settings.adjudications_topic, "lfr.adjudications.v3", timeout, bar),
        counts=read_bodies(settings, settings.counts_topic, "lfr.counts.v2", timeout, bar),
    )
    # The watchlist and the deployments through their verified readers (issue #23): a forged
    # record neither widens a deployment's watchlist nor changes who authorised it.
    # Each change applies only when its audit record exists and describes it (services/governance/audit/index.py).
    keyring = load_keyring(settings)
    audit = AuditIndex(settings, settings.audit_topic, keyring, timeout)
    try:
        _verified_inputs(settings, inputs, keyring, audit, timeout, bar)
    finally:
        audit.close()
    return inputs


def _verified_inputs(settings, inputs: ReportInputs, keyring, audit: AuditIndex, timeout: float, bar: Progress | None) -> None:
    watchlist = VerifiedWatchlist(keyring, settings.watchlist_topic, RefusalTally("report"), audit_index=audit)
    for subject, entry in fold(read_records(settings, settings.watchlist_topic, timeout, bar), watchlist).items():
        inputs.watchlist_scopes[subject] = tuple(entry.deployments)
    deployments = VerifiedDeployments(keyring, settings.deployments_topic, RefusalTally("report"), audit_index=audit)
    found: dict = {}
    for record in read_records(settings, settings.deployments_topic, timeout, bar):
        key = (record.key() or b"").decode("utf-8", "replace")
        try:
            changed = deployments.change(record, False, found.get(key))
        except Exception:  # noqa: BLE001 - a record that does not parse is not reported on
            continue
        if changed is not None and changed[1] is None:
            found.pop(key, None)
        elif changed is not None:
            found[key] = changed[1]
    for key, deployment in found.items():
        facts = facts_from_record(deployment.to_data())
        if facts.deployment_id:
            inputs.deployments[facts.deployment_id] = facts
    # A record's place is also the deployment it belongs to: one naming another force than its
    # deployment's is left out and counted (topics outside the lfr.<force>. scheme rely on this).
    owners = {d.deployment_id: d.force for d in found.values()}
    for name, topic in (("alerts", settings.alerts_topic), ("adjudications", settings.adjudications_topic), ("counts", settings.counts_topic)):
        setattr(inputs, name, [data for data in getattr(inputs, name) if _of_deployments_force(data, owners, topic)])


def _of_deployments_force(data: dict[str, Any], owners: dict[str, str | None], topic: str) -> bool:
    if data.get("deployment_id") not in owners:
        return True  # a deployment the report does not know: its own rules apply (services/operations/report/build.py)
    try:
        place.check_deployment(data, owners[data["deployment_id"]], topic, "report")
    except place.ForceMismatch:
        return False
    return True
