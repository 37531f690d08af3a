"""Reads the dead-letter topic (assigned from the start, never as a group member, so listing
moves no offsets) and replays chosen records to their source topics, audited."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Producer

from services.common.kafka_config import client_config, producer_config
from services.common.settings import KafkaSettings
from services.common.topic_reader import TopicMissing, read_to_end

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
    try:
        for record in read_to_end(client_config(settings), topic, group_id="lfr-dlq-cli", timeout_s=timeout_s, on_progress=on_progress):
            letter = DeadLetter(record.partition(), record.offset(), record.key(), record.value(), tuple(record.headers() or ()))
            if keep is None or keep(letter):
                yield letter
    except TopicMissing:
        raise DlqError(f"dead-letter topic {topic} does not exist") from None
    except TimeoutError as exc:
        raise DlqError(str(exc)) from None


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
