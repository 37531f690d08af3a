"""The one read-to-the-end loop (services/common/topic_reader.py), on the real broker: it stops at
the end even when no record sits at offset high - 1 (a transaction's commit marker), reads
empty partitions and every record, and says when the topic is missing."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from services.common.settings import KafkaSettings, load_settings
from services.common.topic_reader import TopicMissing, read_to_end
from services.operations.report.topics import read_topic
from tests.kafka_helpers import create_topics, produce, unique


def _transactional(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique("tx")})
    producer.init_transactions(10)
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, value, partition=0)
    producer.commit_transaction(10)


def test_a_topic_ending_in_a_commit_marker_is_read_to_its_end(broker, kafka_env):
    """Before the shared reader, every command-line read waited for a record at high - 1, which a
    commit marker never delivers: `lfr report`, `lfr watchlist list`, `lfr audit verify` and the
    others ran into their timeout (report: TimeoutError after 5 s here)."""
    topic = unique("marker")
    create_topics(broker.bootstrap_servers, topic, partitions=2)
    _transactional(broker.bootstrap_servers, topic, [b"a", b"b"])
    settings = load_settings(KafkaSettings)
    started = time.monotonic()
    assert [value for _key, value in read_topic(settings, topic, 5.0)] == [b"a", b"b"]
    assert time.monotonic() - started < 4


def test_every_record_of_every_partition_with_progress(broker, kafka_env):
    topic = unique("plain")
    create_topics(broker.bootstrap_servers, topic, partitions=3)
    values = [f"v{i}".encode() for i in range(40)]
    produce(broker.bootstrap_servers, topic, values, keys=[f"k{i % 7}".encode() for i in range(40)])
    progress: list[tuple[int, int]] = []
    config = {"bootstrap.servers": broker.bootstrap_servers}
    read = list(read_to_end(config, topic, group_id="test", timeout_s=10, on_progress=lambda seen, total: progress.append((seen, total))))
    assert sorted(m.value() for m in read) == sorted(values)
    for partition in {m.partition() for m in read}:
        offsets = [m.offset() for m in read if m.partition() == partition]
        assert offsets == sorted(offsets)
    assert progress[-1] == (40, 40)

    empty = unique("empty")
    create_topics(broker.bootstrap_servers, empty, partitions=2)
    assert list(read_to_end(config, empty, group_id="test", timeout_s=10)) == []
    with pytest.raises(TopicMissing):
        list(read_to_end(config, unique("absent"), group_id="test", timeout_s=10))
