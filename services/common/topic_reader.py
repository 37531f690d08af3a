"""Read a topic from its beginning to its end, once: the one loop behind every command-line read
(watchlist and deployment lists, reports, audit verify, dead letters, the privacy audit).

"The end" is the high watermark of each partition when the read starts. A partition is done when
the consumer's position reaches it, or the broker says end of partition; never by waiting for a
record at offset high - 1, because there may be none: a transaction's commit marker takes an
offset that no consumer ever sees (measured on the embedded broker, tests/test_topic_reader.py),
and compaction removes records whose offsets stay taken. After every partition is done the read
goes on until one poll comes back empty: Tansu can report a high watermark short of a
multi-record last batch, and those records belong to the read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

POLL_S = 0.2


class TopicMissing(LookupError):
    """The topic does not exist on the broker."""


def read_to_end(
    config: Mapping[str, Any],
    topic: str,
    *,
    group_id: str,
    timeout_s: float = 30.0,
    partitions: Iterable[int] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    last: int | None = None,
) -> Iterator[Message]:
    """Every record of ``topic`` (``partitions``, default all) in offset order per partition, to
    the end. ``config`` is a librdkafka client config (kafka_config.client_config). No offsets are
    committed: ``group_id`` only names the reader. ``on_progress(seen, total)`` after each batch.
    ``last``: only the last ``last`` offsets of each partition (a bounded tail, not the whole log).
    Raises TopicMissing, or TimeoutError when the end is not reached within ``timeout_s``."""
    consumer = Consumer({**config, "group.id": group_id, "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        if partitions is None:
            metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                raise TopicMissing(f"topic {topic} does not exist")
            partitions = metadata.partitions
        ends: dict[int, int] = {}
        starts: dict[int, int] = {}
        total = 0
        for p in sorted(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                ends[p] = high
                starts[p] = OFFSET_BEGINNING if last is None or high - last <= low else high - last
                total += high - max(low, starts[p])
        if not ends:
            return
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in ends])
        pending = set(ends)
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
            batch = consumer.consume(500, POLL_S)
            if not batch and not pending:
                return
            for message in batch:
                error = message.error()
                if error is None:
                    seen += 1
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
            if pending:
                for position in consumer.position([TopicPartition(topic, p) for p in pending]):
                    if position.offset >= ends[position.partition]:
                        pending.discard(position.partition)
            if on_progress is not None:
                on_progress(seen, max(seen, total))
    finally:
        consumer.close()


def assign_from_beginning(consumer: Consumer, topic: str) -> dict[int, int]:
    """Assign every partition of ``topic`` from its first record (no group offsets: a live view is
    rebuilt from the topic) and return each partition's end at this moment, for ``caught_up``.
    Raises TopicMissing."""
    metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise TopicMissing(f"topic {topic} does not exist (run `lfr topics apply`)")
    partitions = sorted(metadata.partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}


def caught_up(consumer: Consumer, topic: str, ends: Mapping[int, int]) -> bool:
    """Whether the consumer's position has reached ``ends`` on every partition (by position, so a
    commit marker or a compacted tail does not hold a live view back from ready)."""
    positions = consumer.position([TopicPartition(topic, p) for p in ends])
    return all(ends[tp.partition] <= 0 or tp.offset >= ends[tp.partition] for tp in positions)
