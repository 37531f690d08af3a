"""Reads and writes the force registry topic (lfr.forces.v1), the pattern of the deployments
topic: one compacted record per force, audited first, then written signed with the audit hash.

``read_registry`` is the registry's one verified reader (issue #23): a record counts only if the
SignatureGate admits it (a trusted key, the exact bytes signed, an audit record that exists and
describes this very change, no replay), it validates, and its key is the force it describes.
"""

from __future__ import annotations

import logging

from confluent_kafka import Producer

from services.governance.audit.writer import change_digest
from services.governance.audit.identity import load_keyring
from services.governance.audit.index import AuditIndex
from services.governance.audit.refusals import RefusalTally
from services.common.envelope import decode, encode
from services.common.errors import MessageError
from services.common.kafka_config import client_config, producer_config
from services.common.settings import ForceRegistrySettings, ForceSettings
from services.common.signing import SignatureGate
from services.common.topic_reader import TopicMissing, read_to_end

from .registry import SCHEMA, Force, ForceRegistry

logger = logging.getLogger(__name__)
AUDIT_PREFIX = "force."


def read_registry(settings: ForceRegistrySettings) -> ForceRegistry:
    """Every registered force (the last verified record per id) plus ``default``; records refused
    for their signature or audit link, that do not validate, or whose key is not their force id
    are skipped, counted and logged (no personal data in them)."""
    found: dict[str, Force] = {}
    keyring = load_keyring(settings)
    try:
        records = read_to_end(client_config(settings), settings.forces_topic, group_id="lfr-forces-reader",
                              timeout_s=settings.forces_read_timeout_s)
    except TopicMissing:
        return ForceRegistry()
    audit = AuditIndex(settings, settings.audit_topic, keyring, settings.forces_read_timeout_s)
    gate = SignatureGate(keyring, settings.forces_topic, RefusalTally("forces"), audit_index=audit)
    try:
        admitted = [record for record in records if gate.admit(record, False) is not None]
    finally:
        audit.close()
    for record in admitted:
        key = (record.key() or b"").decode("utf-8", "replace")
        if record.value() is None:
            found.pop(key, None)
            continue
        try:
            envelope = decode(record.value())
            if envelope.schema != SCHEMA:
                raise MessageError(f"schema {envelope.schema}")
            force = Force.from_data(envelope.data)
            if force.force_id != key:
                raise MessageError("key is not the record's force id")
        except (MessageError, KeyError, TypeError) as exc:
            logger.warning("force registry record skipped", extra={"offset": record.offset(), "reason": str(exc)})
            continue
        found[key] = force
    return ForceRegistry(found.values())


class ForceStore:
    def __init__(self, settings: ForceSettings) -> None:
        from services.governance.watchlist.store import WatchlistStore  # noqa: PLC0415 - its audit writer and signer

        self.settings = settings
        self.watchlist = WatchlistStore(settings)
        self._producer = Producer(producer_config(settings))

    def read(self) -> ForceRegistry:
        return read_registry(self.settings)

    def publish(self, force: Force, actor: str) -> None:
        """Audit first, then the record signed with the store's key and carrying the audit hash."""
        topic, key = self.settings.forces_topic, force.force_id.encode()
        value = encode(SCHEMA, force.to_data())
        _record, audit_hash = self.watchlist.audit_writer.write(
            AUDIT_PREFIX + ("add" if force.revision == 0 else "update"), force.force_id,
            {"revision": force.revision, "name": force.name, "change_sha256": change_digest(topic, key, value)},
            requested_by=actor)
        errors: list = []
        self._producer.produce(topic, key=key, value=value,
                               headers=self.watchlist.signer.record_headers(topic, key, value, audit_hash=audit_hash),
                               on_delivery=lambda err, _msg: err and errors.append(err))
        if self._producer.flush(30) or errors:
            raise RuntimeError(f"could not write to {topic}: {errors[0].str() if errors else 'timed out'}")
