"""Reads the dead-letter topic (assigned from the start, never as a group member, so listing
moves no offsets) and replays chosen records to their source topics, audited."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from services.common.kafka_config import client_config, producer_config
from services.common.settings import KafkaSettings

from .records import DeadLetter, Filter

logger = logging.getLogger(__name__)

REPLAY_HEADER = "lfr_replay_of"  # "<dlq topic>:<partition>:<offset>" on each replayed record


class DlqError(RuntimeError):
    """The dead-letter topic cannot be read (missing, or not read to its end in time)."""

    exit_code = 4  # services.common.cli_support.EXIT_KAFKA


def read_dead_letters(
    settings: KafkaSettings,
    topic: str,
    keep: Filter | None = None,
    timeout_s: float = 30.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Iterator[DeadLetter]:
    """Every record of ``topic`` up to the high watermarks at the start, in partition order."""
    consumer = Consumer({**client_config(settings), "group.id": "lfr-dlq-cli", "enable.auto.commit": False,
                         "enable.partition.eof": False})
    try:
        metadata = consumer.list_topics(timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise DlqError(f"dead-letter topic {topic} does not exist")
        targets = {}
        for p in sorted(metadata.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                targets[p] = high
        total = sum(targets.values())
        if not targets:
            return
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in targets])
        deadline = time.monotonic() + timeout_s
        seen, idle_polls = 0, 0
        # Read to the watermarks taken at the start, then until the topic stays quiet for a
        # moment: Tansu reports a high watermark short of a multi-record last batch.
        while targets or idle_polls < 2:
            if time.monotonic() > deadline:
                raise DlqError(f"could not read {topic} to its end within {timeout_s} s")
            batch = consumer.consume(500, 0.2)
            idle_polls = 0 if batch else idle_polls + 1
            for record in batch:
                if record.error() is not None:
                    continue
                seen += 1
                if record.offset() + 1 >= targets.get(record.partition(), 0):
                    targets.pop(record.partition(), None)
                letter = DeadLetter(record.partition(), record.offset(), record.key(), record.value(),
                                    tuple(record.headers() or ()))
                if keep is None or keep(letter):
                    yield letter
            if on_progress:
                on_progress(seen, max(seen, total))
    finally:
        consumer.close()


@dataclass(frozen=True)
class ReplayResult:
    replayed: list[DeadLetter]
    refused: list[tuple[DeadLetter, str]]


def replay(
    settings: KafkaSettings,
    dlq_topic: str,
    letters: Iterable[DeadLetter],
    audit: Callable[[DeadLetter], None],
    dry_run: bool = False,
) -> ReplayResult:
    """Re-publish each replayable letter to its source topic with its original key, value and
    headers (plus ``lfr_replay_of``). A withheld or truncated payload is refused, never sent.
    Each record is audited before it is produced, so nothing is replayed without a trace."""
    replayed: list[DeadLetter] = []
    refused: list[tuple[DeadLetter, str]] = []
    producer = None if dry_run else Producer(producer_config(settings))
    errors: list[str] = []
    for letter in letters:
        if letter.payload != "original":
            refused.append((letter, f"payload {letter.payload}: the original record is not in the dead letter"))
            continue
        if not letter.source_topic:
            refused.append((letter, "no lfr_dlq_topic header: source unknown"))
            continue
        if dry_run:
            replayed.append(letter)
            continue
        audit(letter)
        headers = letter.original_headers() + [(REPLAY_HEADER, f"{dlq_topic}:{letter.id}".encode())]
        assert producer is not None
        producer.produce(letter.source_topic, key=letter.key, value=letter.value, headers=headers,
                         on_delivery=lambda err, _msg: err is not None and errors.append(err.str()))
        producer.poll(0)
        replayed.append(letter)
    if producer is not None and (producer.flush(30) or errors):
        raise DlqError(f"replay not acknowledged by the broker: {errors[0] if errors else 'timed out'}")
    return ReplayResult(replayed, refused)
