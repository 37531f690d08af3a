"""The Kafka runner: consume a batch, run the stage, produce its outputs, then store offsets.

Delivery is at-least-once. Offsets are stored (``enable.auto.offset.store=false``) only after
every output and dead-letter record of the batch is acknowledged by the broker (idempotent
producer, ``acks=all``); librdkafka's auto-commit then commits what was stored, and a revoke or
shutdown commits synchronously. A crash therefore re-delivers at most the unfinished batch.

Failure policy:
- a record that cannot be decoded or validated, or on which the stage raises a non-transient
  error, goes to the dead-letter topic with its original bytes and reason headers; the
  partition keeps flowing;
- a transient error (TransientError, ConnectionError, TimeoutError, or the service's own
  list) retries the batch with exponential backoff; when the retry budget (half of
  ``max.poll.interval.ms``) is spent the batch is rewound and polled again, never dropped;
- a FatalError (the index refuses us, the models disagree) stops the service: the batch is
  not committed, ``lfr_fatal_errors_total`` counts it and the process exits with EXIT_FATAL;
- a record that cannot be decoded for any reason (even an exception nobody planned for) is a
  decode_error dead letter; a dead letter too big to send whole goes as headers only
  (``lfr_dlq_payload=truncated``); an output too big to send is the input's output_invalid;
- no produce error stops the runner: a fatal idempotence error (the broker restarted and forgot
  the producer id) replaces the producer and rewinds the batch to its last committed state, any
  other produce failure rewinds it, and ``stalled`` reports when that keeps happening.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from services.governance.forces import place
from services.governance.privacy.payload import PAYLOAD_HEADER, WITHHELD, dead_letter_value

from . import delivery, metrics
from . import health as health_module
from . import jsonevents
from .envelope import encode
from .errors import DecodeError, FatalError, MessageError, OutputValidationError, TransientError, UnknownSchemaError
from .kafka_config import broker_reachable_check, consumer_config, producer_config
from .schemas import SchemaRegistry, default_registry
from .settings import RunnerSettings
from .stage import Message, Output, ResendingStage, Stage
from .stall import StallMonitor

logger = logging.getLogger(__name__)

DEFAULT_TRANSIENT: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)
_ERROR_TEXT_LIMIT = 500
_DELIVERY_TIMEOUT_MS = 15_000
EXIT_FATAL = 4


class _Rewind(Exception):
    """The batch could not be finished now; rewind its partitions and poll it again."""


def _kafka_error(exc: BaseException) -> KafkaError | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None


class _Unexpected(DecodeError):
    """A decode failure nobody planned for: dead-lettered as decode_error, naming the real class."""

    def __init__(self, error: DecodeError, cause: BaseException) -> None:
        super().__init__(str(error))
        self.cause = cause


@dataclass(frozen=True)
class _Record:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    kind: str  # "output" or the dead-letter reason
    source_topic: str = ""


class StageRunner:
    """Runs one stage function against Kafka. One instance per process (or thread, in tests)."""

    def __init__(
        self,
        service: str,
        settings: RunnerSettings,
        stage: Stage,
        input_topics: Sequence[str],
        *,
        accepted_schemas: Iterable[str] | None = None,
        transient_errors: tuple[type[BaseException], ...] = DEFAULT_TRANSIENT,
        registry: SchemaRegistry | None = None,
        admit: Callable[[Message], bool] | None = None,
        health: health_module.Health | None = None,
    ) -> None:
        self.service = service
        # Drop policy hook (the deployment policy): records it refuses are counted by it,
        # skipped, and their offsets committed with the batch.
        self.admit = admit
        self.settings = settings
        self.stage = stage
        self.input_topics = list(input_topics)
        self.accepted_schemas = frozenset(accepted_schemas) if accepted_schemas is not None else None
        self.transient_errors = transient_errors
        self.registry = registry or default_registry()
        self._stop = threading.Event()
        self._exit_code = 0
        self._next_lag_report = 0.0
        self._lag_labels: set[tuple[str, str]] = set()
        self._assigned: set[tuple[str, int]] = set()
        self._lag_total = 0
        self._producer_fatal = threading.Event()
        self.stall = StallMonitor(service, settings.stall_after_s)
        self._producer = self._new_producer()
        self._consumer = Consumer({**consumer_config(settings), "error_cb": self._on_consumer_error})
        self._joined = False
        self.health = health or health_module.DEFAULT
        self.health.add_check("kafka", health_module.CachedCheck(broker_reachable_check(settings)))
        self.health.add_check("partitions_assigned", self._partitions_check)
        # Work waiting and nothing produced or fetched for LFR_STALL_AFTER_S (issue #14).
        self.health.add_check("not_stalled", lambda: (not self.stall.stalled, f"{self.stall.seconds_stalled:.0f} s without progress"))

    @property
    def stalled(self) -> bool:
        """Work is waiting and nothing was produced or fetched for ``stall_after_s`` (readiness)."""
        return self.stall.stalled

    def _new_producer(self) -> Producer:
        # Report an undelivered record well inside the batch deadline, so a producer the broker
        # forgot (restart) is replaced in seconds rather than after librdkafka's default 5 min.
        timeout_ms = min(self.settings.max_poll_interval_ms // 2, _DELIVERY_TIMEOUT_MS)
        return Producer({**producer_config(self.settings), "message.timeout.ms": timeout_ms, "error_cb": self._on_producer_error})

    def _recreate_producer(self) -> None:
        """Replace a producer the broker no longer recognises; the caller rewinds the batch."""
        logger.warning("recreating producer after a fatal idempotence error", extra={"service": self.service})
        old = self._producer
        try:
            old.purge(in_queue=True, in_flight=True)
            old.poll(0)
        except (KafkaException, RuntimeError, SystemError) as exc:
            logger.warning("purging the old producer failed", extra={"service": self.service, "error": str(exc)})
        self._producer_fatal.clear()
        self._producer = self._new_producer()
        delivery.PRODUCER_RECREATIONS.labels(self.service).inc()

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the batch in hand, commit and leave the group (SIGTERM does this)."""
        if not self._stop.is_set():
            logger.info("stop requested; draining", extra={"service": self.service})
            self._stop.set()

    def run(self) -> int:
        """Poll until stopped; return the process exit code (0 after a clean drain)."""
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        self._consumer.subscribe(
            self.input_topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        logger.info("runner started", extra={"service": self.service, "topics": self.input_topics})
        try:
            while not self._stop.is_set():
                self.health.heartbeat(self.service, self.settings.liveness_timeout_s)
                records = self._next_batch()
                if records:
                    self._handle(records)
                elif self._lag_total <= 0:
                    self.stall.progress()  # idle with nothing behind: not a stall
                else:
                    self.stall.waiting()
                self._report_lag()
        finally:
            with self.health.idle(self.service):
                self._shutdown()
        return self._exit_code

    def _partitions_check(self) -> tuple[bool, str]:
        # Joined the group: an assignment arrived, possibly empty (more replicas than partitions
        # is a valid, ready spare).
        return self._joined, f"{len(self._assigned)} partition(s) assigned" if self._joined else "not in the group yet"

    def _next_batch(self) -> list:
        """Adaptive batching: wait for one record, then take what is already fetched, up to the cap.

        consume(n, timeout) would wait the whole timeout whenever fewer than n records are
        there, adding up to a poll timeout of latency per stage at low rates; under load the
        local queue is full and batches still fill.
        """
        first = self._consumer.poll(self.settings.poll_timeout_ms / 1000)
        if first is None:
            return []
        if self.settings.batch_max_messages == 1:
            return [first]
        return [first, *self._consumer.consume(num_messages=self.settings.batch_max_messages - 1, timeout=0)]

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.request_stop()
        # Bound the drain: a stage stuck on a dead dependency must not hold the pod forever.
        watchdog = threading.Timer(self.settings.shutdown_timeout_s, self._drain_timed_out)
        watchdog.daemon = True
        watchdog.start()

    def _drain_timed_out(self) -> None:
        logger.error(
            "drain did not finish in time; exiting without commit",
            extra={"service": self.service, "timeout_s": self.settings.shutdown_timeout_s},
        )
        os._exit(3)

    def _shutdown(self) -> None:
        try:
            self._commit()
            self._consumer.close()
        except KafkaException as exc:
            logger.warning("consumer close failed", extra={"service": self.service, "error": str(exc)})
        remaining = self._flush(self.settings.shutdown_timeout_s)
        if remaining:
            logger.error("records left unsent at shutdown", extra={"service": self.service, "count": remaining})
            self._exit_code = self._exit_code or 1
        logger.info("runner stopped", extra={"service": self.service, "exit_code": self._exit_code})

    # -- one batch ---------------------------------------------------------------------------

    def _handle(self, raw: list) -> None:
        records = []
        for record in raw:
            error = record.error()
            if error is not None:
                metrics.CONSUMER_ERRORS.labels(self.service).inc()
                logger.warning("consumer error", extra={"service": self.service, "error": error.str()})
                continue
            records.append(record)
            metrics.MESSAGES_CONSUMED.labels(self.service, record.topic()).inc()
        if not records:
            return
        metrics.BATCH_SIZE.labels(self.service).observe(len(records))
        messages, dead = [], []
        for record in records:
            try:
                messages.append(self._decode(record))
            except MessageError as exc:
                dead.append((record, exc))
            except Exception as exc:  # noqa: BLE001 - hostile bytes must never stop the runner
                error = DecodeError(f"unexpected {type(exc).__name__} while decoding: {str(exc)[:200]}")
                dead.append((record, _Unexpected(error, exc)))
        if self.admit is not None:
            messages = [m for m in messages if self.admit(m)]
        by_position = {(r.topic(), r.partition(), r.offset()): r for r in records}
        try:
            outgoing, failed = self._process(messages) if messages else ([], [])
            dead.extend((by_position[(m.topic, m.partition, m.offset)], exc) for m, exc in failed)
            outgoing.extend(self._dead_letter(record, exc) for record, exc in dead)
            self._deliver(outgoing)
        except _Rewind:
            self.stall.waiting()
            self._outputs_lost("rewind")
            self._rewind(records)
            return
        except FatalError as exc:
            self._stop_fatal(exc)
            return
        self._store_offsets(records)
        if isinstance(self.stage, ResendingStage):
            self.stage.outputs_delivered()
        self.stall.progress()

    def _stop_fatal(self, exc: FatalError) -> None:
        """Stop without storing the batch's offsets: it is redelivered once the cause is fixed."""
        metrics.FATAL_ERRORS.labels(self.service, exc.reason).inc()
        logger.error(
            "fatal error; stopping the service",
            extra={"service": self.service, "reason": exc.reason, "error_class": type(exc).__name__, "error": str(exc)[:_ERROR_TEXT_LIMIT]},
        )
        self._exit_code = EXIT_FATAL
        self._stop.set()

    def _decode(self, record) -> Message:
        envelope = jsonevents.decode_record(record.value(), record.headers(), self.registry)
        if self.accepted_schemas is not None and envelope.schema not in self.accepted_schemas:
            raise UnknownSchemaError(f"{envelope.schema} is not accepted by {self.service}")
        # A governed record naming another force than its topic's: refused (services/governance/forces/place.py).
        place.check_topic(record.topic(), envelope.schema, envelope.data, self.service)
        timestamp_type, timestamp = record.timestamp()
        return Message(
            schema=envelope.schema,
            data=envelope.data,
            topic=record.topic(),
            partition=record.partition(),
            offset=record.offset(),
            key=record.key(),
            timestamp_ms=timestamp if timestamp_type else 0,
            headers=tuple(record.headers() or ()),
        )

    def _process(self, messages: list[Message]) -> tuple[list[_Record], list[tuple[Message, Exception]]]:
        """Run the stage on the batch; on a non-transient error, isolate the failing messages."""
        try:
            return self._call_with_retry(messages), []
        except (_Rewind, FatalError):
            raise
        except Exception as exc:  # noqa: BLE001 - any stage failure is a property of some message
            self._outputs_lost("stage_error")
            if len(messages) == 1:
                return [], [(messages[0], exc)]
        outgoing, failed = [], []
        for message in messages:
            try:
                outgoing.extend(self._call_with_retry([message]))
            except (_Rewind, FatalError):
                raise
            except Exception as exc:  # noqa: BLE001
                failed.append((message, exc))
        return outgoing, failed

    def _call_with_retry(self, messages: list[Message]) -> list[_Record]:
        budget_s = self.settings.max_poll_interval_ms / 2000
        started = time.monotonic()
        delay = self.settings.retry_backoff_initial_s
        while True:
            try:
                with metrics.STAGE_DURATION.labels(self.service).time():
                    outputs = list(self.stage(messages))
                return [self._encode(output) for output in outputs]
            except self.transient_errors as exc:
                self._outputs_lost("transient_error")
                metrics.TRANSIENT_RETRIES.labels(self.service).inc()
                logger.warning(
                    "transient error; retrying batch",
                    extra={"service": self.service, "error_class": type(exc).__name__, "retry_in_s": round(delay, 3)},
                )
                with self.health.idle(self.service):
                    waited_out = time.monotonic() - started + delay > budget_s or self._stop.wait(delay)
                if waited_out:
                    raise _Rewind from exc
                delay = min(delay * 2, self.settings.retry_backoff_max_s)

    def _encode(self, output: Output) -> _Record:
        key = output.key.encode() if isinstance(output.key, str) else output.key
        headers = list(output.headers)
        try:
            if jsonevents.is_json(output.schema):  # no image in it: a plain JSON CloudEvent
                value, ce_headers = jsonevents.encode(output.schema, output.data, self.registry)
                # A new event: its own attributes replace any an input's headers carried over.
                headers = ce_headers + [(name, data) for name, data in headers if not jsonevents.is_event_header(name)]
            else:
                value = encode(output.schema, output.data, self.registry)
        except MessageError as exc:
            raise OutputValidationError(f"stage output invalid: {exc}") from exc
        if not delivery.fits(key, value, headers):
            # Deterministic: re-sending cannot help, so the input becomes an output_invalid dead letter.
            raise OutputValidationError(f"stage output of {len(value)} bytes exceeds the record limit")
        return _Record(output.topic, key, value, headers, "output")

    def _dead_letter(self, record, exc: BaseException) -> _Record:
        """Headers saying where the record came from and why, plus its original bytes unless it is
        biometric (then ``lfr_dlq_payload=withheld`` and no value: services/governance/privacy/payload.py).

        A record too big to carry the added headers goes as headers only, marked truncated.
        """
        reason = exc.reason if isinstance(exc, MessageError) else "stage_error"
        text = str(exc).replace("\n", " ")[:_ERROR_TEXT_LIMIT] or type(exc).__name__
        if isinstance(exc, _Unexpected):
            exc = exc.cause
        added = {
            "lfr_dlq_topic": record.topic(),
            "lfr_dlq_partition": str(record.partition()),
            "lfr_dlq_offset": str(record.offset()),
            "lfr_dlq_service": self.service,
            "lfr_dlq_reason": reason,
            "lfr_dlq_error_class": type(exc).__name__,
            "lfr_dlq_error": text,
            "lfr_dlq_at_ms": str(int(time.time() * 1000)),
        }
        value, added[PAYLOAD_HEADER] = dead_letter_value(record.topic(), record.value(), record.headers())
        if reason == place.ForceMismatch.reason:  # another force's record: its content stays where it was written
            value, added[PAYLOAD_HEADER] = None, WITHHELD
        headers = list(record.headers() or ()) + [(name, text.encode()) for name, text in added.items()]
        key = record.key()
        if not delivery.fits(key, value, headers):
            added[PAYLOAD_HEADER] = delivery.PAYLOAD_TRUNCATED
            headers = [(name, text.encode()) for name, text in added.items()]
            key, value = delivery.truncated_key(key), None
            delivery.DEAD_LETTERS_TRUNCATED.labels(self.service, record.topic()).inc()
        self.registry.validate("lfr.dlq.v1", added)
        logger.warning(
            "record dead-lettered",
            extra={
                "service": self.service,
                "topic": record.topic(),
                "partition": record.partition(),
                "offset": record.offset(),
                "reason": reason,
                "error_class": type(exc).__name__,
                "payload": added[PAYLOAD_HEADER],
            },
        )
        return _Record(self.settings.dlq_topic, key, value, headers, reason, record.topic())

    def _deliver(self, outgoing: list[_Record]) -> None:
        """Produce everything and wait for acknowledgement; any failure rewinds the batch.

        A dead letter the broker refuses as too large is sent again as headers only; a fatal
        idempotence error replaces the producer before the batch is rewound and re-sent.
        """
        if not outgoing:
            return
        if self._producer_fatal.is_set():
            self._recreate_producer()
        failures: list[tuple[KafkaError, _Record]] = []

        def delivered(error, msg, record: _Record) -> None:
            if error is not None:
                failures.append((error, record))
            elif record.kind == "output":
                metrics.MESSAGES_PRODUCED.labels(self.service, msg.topic()).inc()
            else:
                metrics.MESSAGES_DEAD_LETTERED.labels(self.service, record.source_topic, record.kind).inc()

        for record in outgoing:
            self._produce_one(record, delivered)
        deadline = time.monotonic() + self.settings.max_poll_interval_ms / 2000
        while self._flush(1.0) and time.monotonic() < deadline and not self._producer_fatal.is_set():
            self.health.heartbeat(self.service)  # waiting on the broker, within a bound
        oversized_dead = [rec for err, rec in failures if rec.kind != "output" and delivery.is_size_error(err)]
        if oversized_dead and len(oversized_dead) == len(failures) and not len(self._producer):
            self._deliver([self._truncate(rec) for rec in oversized_dead])
            return
        fatal = self._producer_fatal.is_set() or any(
            delivery.is_fatal_idempotence(err) or err.code() == KafkaError._MSG_TIMED_OUT for err, _ in failures
        )
        if failures or len(self._producer) or fatal:
            logger.warning(
                "produce failed; rewinding batch",
                extra={
                    "service": self.service,
                    "failures": len(failures),
                    "fatal": fatal,
                    "first_error": failures[0][0].str() if failures else "timeout",
                },
            )
            if fatal:
                self._recreate_producer()
            raise _Rewind

    def _flush(self, timeout_s: float) -> int:
        """flush(), except that a producer in a fatal state (it raises from inside flush) is
        marked for replacement instead of killing the runner."""
        try:
            return self._producer.flush(timeout_s)
        except (KafkaException, SystemError) as exc:
            logger.warning("producer failed while flushing", extra={"service": self.service, "error": str(exc)[:200]})
            if delivery.is_fatal_idempotence(_kafka_error(exc)) or isinstance(exc, SystemError):
                self._producer_fatal.set()
            return len(self._producer)

    def _produce_one(self, record: _Record, delivered) -> None:
        while True:
            try:
                self._producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers or None,
                    on_delivery=lambda err, msg, rec=record: delivered(err, msg, rec),
                )
                return
            except BufferError:
                self._flush(0.05)  # local queue full: let deliveries drain
                if self._producer_fatal.is_set():
                    raise _Rewind from None
            except KafkaException as exc:
                error = _kafka_error(exc)
                if record.kind != "output" and delivery.is_size_error(error) and record.value is not None:
                    record = self._truncate(record)
                    continue
                if delivery.is_fatal_idempotence(error):
                    self._producer_fatal.set()
                logger.warning(
                    "produce refused; rewinding batch",
                    extra={"service": self.service, "topic": record.topic, "error": str(exc)[:200]},
                )
                raise _Rewind from exc

    def _truncate(self, record: _Record) -> _Record:
        """The dead letter's own headers and a truncation marker, without the original value."""
        own = [(name, data) for name, data in record.headers if name.startswith("lfr_dlq_") and name != "lfr_dlq_payload"]
        delivery.DEAD_LETTERS_TRUNCATED.labels(self.service, record.source_topic).inc()
        headers = [*own, ("lfr_dlq_payload", delivery.PAYLOAD_TRUNCATED.encode())]
        return _Record(record.topic, delivery.truncated_key(record.key), None, headers, record.kind, record.source_topic)

    # -- offsets and rebalances ----------------------------------------------------------------

    def _store_offsets(self, records: list) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic(), record.partition())
            next_offsets[key] = max(next_offsets.get(key, 0), record.offset() + 1)
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in next_offsets.items()])
        except KafkaException as exc:
            # The partition was revoked meanwhile; its new owner re-processes (at-least-once).
            logger.warning("could not store offsets", extra={"service": self.service, "error": str(exc)})

    def _rewind(self, records: list) -> None:
        metrics.REDELIVERIES.labels(self.service).inc()
        first: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic(), record.partition())
            first[key] = min(first.get(key, record.offset()), record.offset())
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                logger.warning("seek failed", extra={"service": self.service, "topic": topic, "partition": partition, "error": str(exc)})
        with self.health.idle(self.service):
            self._stop.wait(self.settings.retry_backoff_initial_s)

    def _commit(self) -> None:
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                logger.warning("commit failed", extra={"service": self.service, "error": str(exc)})

    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Cooperative rebalancing hands out increments; assignment() does not include them yet.
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        self._joined = True
        metrics.ASSIGNED_PARTITIONS.labels(self.service).set(len(self._assigned))
        logger.info("partitions assigned", extra={"service": self.service, "partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    def _on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Called from inside consume(), so no batch is in flight: what is stored is complete.
        self._commit()
        self._forget_lag(partitions)
        logger.info("partitions revoked", extra={"service": self.service, "partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})

    def _on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        self._joined = False
        self._forget_lag(partitions)
        logger.warning("partitions lost", extra={"service": self.service, "partitions": [f"{p.topic}[{p.partition}]" for p in partitions]})
        # The group forgot us, most often because the broker restarted (#14): it forgot this
        # idempotent producer too, whose next records would only time out after the delivery
        # timeout, stage after stage (measured: 3 x 15 s before the first alert). Nothing is in
        # flight between batches, so the next batch starts on a fresh producer.
        self._producer_fatal.set()
        # What was delivered before the restart may be gone with the broker's records.
        self._outputs_lost("partitions_lost")

    def _outputs_lost(self, reason: str) -> None:
        """Tell a stage that remembers what it sent (ResendingStage) to send it again."""
        if isinstance(self.stage, ResendingStage):
            self.stage.outputs_lost(reason)

    def _forget_lag(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            labels = (tp.topic, str(tp.partition))
            if labels in self._lag_labels:
                metrics.CONSUMER_LAG.remove(self.service, *labels)
                self._lag_labels.discard(labels)
            self._assigned.discard((tp.topic, tp.partition))
        metrics.ASSIGNED_PARTITIONS.labels(self.service).set(len(self._assigned))

    def _report_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag_report:
            return
        self._next_lag_report = now + self.settings.lag_report_interval_s
        assignment = self._consumer.assignment()
        if not assignment:
            return
        total = 0
        for tp in self._consumer.position(assignment):
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high < 0:
                continue
            lag = high - (tp.offset if tp.offset >= 0 else low)
            labels = (tp.topic, str(tp.partition))
            metrics.CONSUMER_LAG.labels(self.service, *labels).set(max(0, lag))
            self._lag_labels.add(labels)
            total += max(0, lag)
        self._lag_total = total

    # -- client callbacks (librdkafka threads) -------------------------------------------------

    def _on_consumer_error(self, error: KafkaError) -> None:
        metrics.CONSUMER_ERRORS.labels(self.service).inc()
        logger.warning("kafka consumer error", extra={"service": self.service, "error": error.str()})

    def _on_producer_error(self, error: KafkaError) -> None:
        if delivery.is_fatal_idempotence(error):
            # The broker forgot this producer (restart, memory storage): a fresh producer and a
            # rewound batch re-send from the last committed offsets; exiting would only crash-loop.
            logger.error("fatal producer error; the producer will be replaced", extra={"service": self.service, "error": error.str()})
            self._producer_fatal.set()
        else:
            logger.warning("kafka producer error", extra={"service": self.service, "error": error.str()})
