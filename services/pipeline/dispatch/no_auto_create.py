"""Topic auto-creation off in the dispatcher's Kafka clients (#14 point 4).

Every other client is confluent-kafka with ``allow.auto.create.topics=false``. The dispatcher's
faust app talks to Kafka through aiokafka, whose client builds each metadata request as
``MetadataRequest(topics)``; from request version 4 on that asks the broker to create every
named topic it lacks, and aiokafka 0.14 has no setting to say otherwise. A producer naming a
topic the broker lost (the embedded broker restarts empty) then re-created it with the broker's
default partitions and configuration before ``lfr broker`` re-applied topics.toml, which cannot
repair a partition count afterwards; a dead letter to a topic nobody declared went on forever.

:func:`disable_topic_auto_creation` makes the aiokafka client module build its metadata
requests with ``allow_auto_topic_creation=False``, the flag the protocol defines for this. It
replaces the one name ``aiokafka.client.MetadataRequest`` (a public protocol class) with a
subclass; it checks the class still takes that argument and refuses to start otherwise, so an
aiokafka upgrade that changes it fails loudly rather than silently creating topics again.
A record for a missing topic then waits for metadata and fails after the producer's request
timeout; the dispatcher retries it (outputs) or gives it up after bounded retries (dead
letters).
"""

from __future__ import annotations

import inspect

from aiokafka import client as aiokafka_client
from aiokafka.protocol.metadata import MetadataRequest


class MetadataRequestNoAutoCreate(MetadataRequest):
    """A metadata request that never asks the broker to create the topics it names."""

    def __init__(self, topics: list[str] | None = None, allow_auto_topic_creation: bool | None = False) -> None:
        super().__init__(topics, allow_auto_topic_creation=bool(allow_auto_topic_creation))


def disable_topic_auto_creation() -> None:
    """Idempotent; call before the faust app creates its clients."""
    if "allow_auto_topic_creation" not in inspect.signature(MetadataRequest.__init__).parameters:
        raise RuntimeError("aiokafka's MetadataRequest no longer takes allow_auto_topic_creation: "
                           "topic auto-creation cannot be turned off in the dispatcher (see services/pipeline/dispatch/no_auto_create.py)")
    aiokafka_client.MetadataRequest = MetadataRequestNoAutoCreate
