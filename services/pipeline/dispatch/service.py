"""The alert dispatcher: a thin faust runner around the pure policy in ``policy.py``.

lfr.matches.v1 -> decide() per (subject, deployment) -> lfr.alerts.v3 (JSON CloudEvents, binary mode)
                                                 -> optional webhook (structured mode)

State: a faust Table ``open-alerts`` keyed ``subject_id|deployment_id``, in memory and backed by
the changelog topic ``{LFR_GROUP_ID}-open-alerts-changelog`` (declared in topics.toml, and
created by faust otherwise) with the input topic's partition count, compacted and deleted
after a state's lifetime (``changelog_config``). Each state write goes to the changelog partition of
the match it came from, so the table is co-partitioned with lfr.matches.v1 (keyed by subject
id): a worker that is assigned matches partition p restores changelog partition p first.

Delivery guarantees (at-least-once in, de-duplicable out), per match, in partition order:
1. decode and validate; a bad record goes to the dead-letter topic with the runner's headers
   (its value withheld: matches carry face chips);
2. decide(); if it yields an alert, produce it and wait for the broker's acknowledgement;
3. write the new state to the changelog and wait for its acknowledgement;
4. only then ack the event (manual acks), so its offset can be committed.
A crash between 2 and 3 re-delivers the match, and the policy re-emits the very same alert
(same ``ce_id``); a crash after 3 re-delivers a match the state already accounts for, which
emits nothing. A restarted dispatcher restores the table from the changelog before it
consumes, so sightings inside the cooldown raise no new alert.

Tansu (the embedded test broker) reports a partition's high watermark as the base offset of
its last record batch plus one, which is short when the last batch holds several records,
and faust's recovery stops at that watermark. Waiting for each changelog write (3) before
the next one keeps every changelog record in its own batch, so recovery is complete there too.
faust 0.15.3 itself can skip input records right after a rebalance; ``faust_fixes.py``
closes both holes we hit.

Webhook (only when LFR_WEBHOOK_URL is set): a second agent in the same consumer group reads
the alerts topic, so deliveries survive restarts (at-least-once; receivers de-duplicate on
the CloudEvent id); the match stream never waits on HTTP. After the last retry the alert's
coordinates go to the dead-letter topic: its value carries a face chip, so it is withheld
there (services/governance/privacy/payload.py) and stays in the alerts topic only.

SIGTERM: faust stops its agents, commits acknowledged offsets and leaves the group; the
process exits 0. A drain that takes longer than LFR_SHUTDOWN_TIMEOUT_S exits 3.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import faust
from prometheus_client import Counter
from confluent_kafka.admin import AdminClient

from services.common import delivery, health
from services.common import metrics as common_metrics
from services.common.envelope import decode
from services.common.errors import DecodeError, MessageError, OutputValidationError, UnknownSchemaError
from services.common.jsonevents import decode_record
from services.common.kafka_config import broker_reachable_check, client_config
from services.common.schemas import default_registry
from services.common.service import EXIT_BAD_SETTINGS, start_service
from services.common.settings import DispatchSettings
from services.governance.deployments.enforcement import start_enforcement
from services.governance.deployments.policy import DeploymentPolicy, frame_deployment
from services.governance.forces.place import force_of_topic, stamp
from services.governance.privacy.payload import PAYLOAD_HEADER, dead_letter_value

from . import metrics
from .cloudevents import STRUCTURED_CONTENT_TYPE, attributes_from_headers, encode_alert, structured
from .faust_fixes import DispatchApp, OrderedTableManager
from .lag import LagProbe
from .no_auto_create import disable_topic_auto_creation
from .policy import ALERT_SCHEMA, MATCH_SCHEMA, POLICY, OpenAlert, decide, expired, table_key
from .evidence import EvidenceSealer
from .webhook import WebhookConfig, WebhookDeliveryError, deliver
from .webhook_security import WebhookSigner

logger = logging.getLogger(__name__)

SERVICE = "dispatch"
TABLE = "open-alerts"
SWEEP_INTERVAL_MS = 60_000
MAX_RECORD_BYTES = 8 * 1024 * 1024  # max.message.bytes of lfr.matches.v1 and lfr.alerts.v3
DEAD_LETTERS_DROPPED = Counter(
    "lfr_dead_letters_dropped_total",
    "Dead letters given up after dead_letter_max_attempts writes (policy dead-letter-bounded-retry)",
    ["service", "topic", "reason"],
)
_ERROR_TEXT_LIMIT = 500


def now_ms() -> int:
    return int(time.time() * 1000)


def changelog_config(settings: DispatchSettings) -> dict[str, str]:
    """The changelog's topic settings: compacted per key, and nothing kept past a state's life.

    A state lives cooldown + grace (then the sweep deletes it), so the changelog's records,
    where and when listed people were seen, are deleted after that too.
    """
    retention_ms = int((settings.cooldown_s + settings.state_grace_s) * 1000)
    return {"cleanup.policy": "compact,delete", "retention.ms": str(retention_ms), "segment.ms": str(min(retention_ms, 600_000))}


# -- wiring helpers ------------------------------------------------------------------------------


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


def broker_credentials(settings: DispatchSettings) -> faust.types.auth.CredentialsT | None:
    """TLS and SASL from the LFR_KAFKA_* settings, as faust credentials (None for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        ca = settings.kafka_ssl_ca_location
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
        if settings.kafka_ssl_certificate_location:
            password = settings.kafka_ssl_key_password.get_secret_value() if settings.kafka_ssl_key_password else None
            key = settings.kafka_ssl_key_location
            context.load_cert_chain(str(settings.kafka_ssl_certificate_location), str(key) if key else None, password)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


def input_partitions(settings: DispatchSettings) -> int:
    """Partition count of the input topic, waiting for it to exist (the table must match it)."""
    admin = AdminClient(client_config(settings))
    deadline = time.monotonic() + settings.topic_wait_timeout_s
    while True:
        try:
            topics = admin.list_topics(timeout=5).topics  # all topics: never auto-creates one
            metadata = topics.get(settings.input_topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                return len(metadata.partitions)
        except Exception as exc:  # noqa: BLE001 - broker not reachable yet
            logger.warning("cannot list topics yet", extra={"error_class": type(exc).__name__})
        if time.monotonic() > deadline:
            raise TimeoutError(f"input topic {settings.input_topic} not found within {settings.topic_wait_timeout_s} s")
        time.sleep(1.0)


def _header_items(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> list[tuple[str, bytes]]:
    if not headers:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value) for name, value in items]


# -- the dispatcher --------------------------------------------------------------------------------


class Dispatcher:
    """The faust app, its topics, the open-alert table and the two agents."""

    def __init__(
        self, settings: DispatchSettings, partitions: int, datadir: Path, clock: Callable[[], int] = now_ms,
        deployments: DeploymentPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.deployments = deployments  # main() always sets it: no alert for a deployment that is not active
        self.clock = clock
        self.registry = default_registry()
        self.cooldown_ms = int(settings.cooldown_s * 1000)
        self.grace_ms = int(settings.state_grace_s * 1000)
        self._next_sweep_ms: dict[int, int] = {}
        self._event_time_ms: dict[int, int] = {}  # latest captured_at_ms seen per input partition
        # Set on SIGTERM/SIGINT (DispatchWorker): broker-write retries stop, the event stays unacked.
        self.stopping = threading.Event()
        disable_topic_auto_creation()  # before faust builds its aiokafka clients (no_auto_create.py)
        self.app = DispatchApp(
            settings.group_id,
            broker=broker_urls(settings.kafka_bootstrap_servers),
            broker_credentials=broker_credentials(settings),
            broker_client_id=settings.kafka_client_id,
            broker_session_timeout=settings.session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
            broker_commit_interval=settings.auto_commit_interval_ms / 1000,
            consumer_auto_offset_reset="earliest",
            consumer_max_fetch_size=MAX_RECORD_BYTES,
            producer_max_request_size=MAX_RECORD_BYTES,
            producer_acks=-1,
            # faust's default waits 20 min; a write that fails sooner is retried under our policy
            # (outputs forever, dead letters up to dead_letter_max_attempts).
            producer_request_timeout=settings.produce_timeout_s,
            store=settings.table_store,
            datadir=str(datadir),
            topic_partitions=partitions,
            topic_replication_factor=settings.changelog_replication_factor,
            topic_disable_leader=True,
            web_enabled=False,
            autodiscover=False,
            TableManager=OrderedTableManager,  # loss-free resume after a rebalance (faust_fixes.py)
            # A broker that lost the changelog (the embedded one restarts empty, #14) leaves the
            # table's offsets above the topic's end; faust's check then crashed the worker. The
            # state in hand is the best there is (it keeps alert ids stable): keep it and go on.
            recovery_consistency_check=False,
        )
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self.matches = self.app.topic(settings.input_topic, partitions=partitions, **raw)
        self.alerts = self.app.topic(settings.output_topic, **raw)
        self.dlq = self.app.topic(settings.dlq_topic, **raw)
        self.evidence = self.app.topic(settings.evidence_topic, **raw)
        self.sealer = EvidenceSealer(client_config(settings), settings.evidence_keys_topic, clock)
        # Values are JSON objects {"partition": p, "state": OpenAlert.to_json()}: ids, times,
        # counts and a score; never a chip.
        self.table = self.app.Table(
            TABLE, partitions=partitions, key_type=str, help="open alert per subject|deployment",
            extra_topic_configs=changelog_config(settings),  # declared in topics.toml too
        )
        self.app.agent(self.matches, name=f"{SERVICE}.matches")(self._match_agent)
        self.app.on_rebalance_complete.connect(self._on_ready)
        self._wire_health()
        self.webhook: WebhookConfig | None = None
        if settings.webhook_url:
            self.webhook = WebhookConfig(
                url=settings.webhook_url,
                token=settings.webhook_token.get_secret_value() if settings.webhook_token else None,
                signer=WebhookSigner(settings.webhook_signing_secret.get_secret_value()) if settings.webhook_signing_secret else None,
                timeout_s=settings.webhook_timeout_s,
                max_retries=settings.webhook_max_retries,
                backoff_initial_s=settings.webhook_backoff_initial_s,
                backoff_max_s=settings.webhook_backoff_max_s,
            )
            self.app.agent(self.alerts, name=f"{SERVICE}.webhook")(self._webhook_agent)

    def _wire_health(self) -> None:
        """/livez: a faust timer beats while the event loop turns (a blocked loop stops it).
        /readyz: broker reachable, and the table restored after the latest rebalance. The same
        timer measures the group's consumer lag in a worker thread."""
        self.rebalanced = False
        topics = [self.settings.input_topic] + ([self.settings.output_topic] if self.settings.webhook_url else [])
        self.lag = LagProbe(self.settings, self.settings.group_id, SERVICE, topics)
        health.add_check("kafka", health.CachedCheck(broker_reachable_check(self.settings)))
        health.add_check("partitions_assigned", lambda: (self.rebalanced, "table restored" if self.rebalanced else "waiting for a rebalance"))
        next_lag = [0.0]

        async def beat(*_args: object) -> None:
            health.heartbeat(SERVICE, self.settings.liveness_timeout_s)
            if time.monotonic() >= next_lag[0]:
                next_lag[0] = time.monotonic() + self.settings.lag_report_interval_s
                await asyncio.get_running_loop().run_in_executor(None, self.lag.report)

        self.app.timer(interval=1.0, name=f"{SERVICE}.health")(beat)

    async def _on_ready(self, _sender: object = None, **_kwargs: object) -> None:
        # Sent once the table is restored from its changelog after a rebalance: safe to process.
        self.rebalanced = True
        logger.info("dispatcher ready", extra={"open_alert_states": len(self.table.data)})

    # -- matches -> alerts ---------------------------------------------------------------------

    async def _match_agent(self, stream: faust.StreamT) -> None:
        manual = stream.noack()
        async for event in manual.events():
            await self.handle_match(event.message)
            # Acked only once the alert and the state write are acknowledged by the broker.
            await manual.ack(event)

    async def handle_match(self, message: Any) -> None:
        common_metrics.MESSAGES_CONSUMED.labels(SERVICE, message.topic).inc()
        logger.debug("match received", extra={"partition": message.partition, "offset": message.offset})
        try:
            envelope = decode(message.value, self.registry)
            if envelope.schema != MATCH_SCHEMA:
                raise UnknownSchemaError(f"{envelope.schema} is not accepted by {SERVICE}")
            match = envelope.data
            if self.deployments is not None and not self.deployments.admit(SERVICE, *frame_deployment(match)):
                return  # dropped and counted by the deployment policy; the event is acked
            key = table_key(match["subject_id"], match["face"]["frame"]["deployment_id"])
            stored = self.table.data.get(key)
            state = OpenAlert.from_json(stored["state"]) if stored else None
            now = self.clock()
            new_state, alert = decide(state, match, self.cooldown_ms, now)
            captured_at = int(match["face"]["frame"]["captured_at_ms"])
            self._event_time_ms[message.partition] = max(self._event_time_ms.get(message.partition, 0), captured_at)
            value = None
            headers: list[tuple[str, bytes]] = []
            if alert is not None:
                stamp(alert.data, force_of_topic(self.settings.output_topic))  # the alert carries its force
                try:
                    value, headers = encode_alert(alert, self.settings.ce_source_prefix, self.registry)
                except MessageError as exc:
                    raise OutputValidationError(f"alert invalid: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - anything wrong with one record dead-letters it
            await self.dead_letter(message, exc)
            return
        if alert is not None and value is not None:
            sealed = self.sealer.seal(alert)  # None (counted) while no transit key is published
            if sealed is not None:
                await self._produce(self.evidence, alert.alert_id.encode(), sealed, [])
            await self._produce(self.alerts, alert.subject_id.encode(), value, headers)
            metrics.ALERTS.labels(alert.priority, alert.kind).inc()
            metrics.CAPTURE_TO_ALERT.observe(alert.capture_to_alert_ms / 1000)
            logger.info(
                "alert emitted",
                extra={"alert_id": alert.alert_id, "ce_id": alert.ce_id, "kind": alert.kind, "revision": alert.revision,
                       "priority": alert.priority, "partition": message.partition, "offset": message.offset},
            )
        if new_state is not state and new_state is not None:
            self.table.data[key] = {"partition": message.partition, "state": new_state.to_json()}
            await self._changelog(message.partition, key, self.table.data[key])
        await self._sweep(message.partition, now)

    async def _changelog(self, partition: int, key: str, value: Any) -> None:
        """Write one table change to changelog partition ``partition`` and wait for the ack."""

        async def send() -> None:
            if value is None:
                await self.table.send_changelog(partition, key, None, value_serializer="raw")
            else:
                await self.table.send_changelog(partition, key, value)

        await self._retrying("changelog write", send)

    async def _sweep(self, partition: int, now: int) -> None:
        """Drop states of this partition whose window closed more than the grace period ago.

        Measured against the earlier of the wall clock and the partition's latest event time,
        so replaying an old backlog never drops the state it is still building.
        """
        if now < self._next_sweep_ms.get(partition, 0):
            return
        self._next_sweep_ms[partition] = now + SWEEP_INTERVAL_MS
        now = min(now, self._event_time_ms.get(partition, now))
        dropped = 0
        for key, stored in list(self.table.data.items()):
            if not stored or stored.get("partition") != partition:
                continue
            if expired(OpenAlert.from_json(stored["state"]), now, self.cooldown_ms, self.grace_ms):
                del self.table.data[key]
                await self._changelog(partition, key, None)
                dropped += 1
        if dropped:
            logger.info("expired alert states dropped", extra={"partition": partition, "count": dropped})

    # -- alerts -> webhook ---------------------------------------------------------------------

    async def _webhook_agent(self, stream: faust.StreamT) -> None:
        manual = stream.noack()
        async with aiohttp.ClientSession() as session:
            async for event in manual.events():
                await self.post_alert(session, event.message)
                await manual.ack(event)

    async def post_alert(self, session: aiohttp.ClientSession, message: Any) -> None:
        assert self.webhook is not None
        common_metrics.MESSAGES_CONSUMED.labels(SERVICE, message.topic).inc()
        if message.timestamp and time.time() - message.timestamp > self.settings.webhook_max_age_s:
            metrics.WEBHOOK_DELIVERIES.labels("expired").inc()
            return
        try:
            try:
                attrs = attributes_from_headers(message.headers)
            except ValueError as exc:
                raise DecodeError(str(exc)) from None
            envelope = decode_record(message.value, message.headers, self.registry)
            if envelope.schema != ALERT_SCHEMA:
                raise UnknownSchemaError(f"{envelope.schema} is not accepted by the {SERVICE} webhook")
            body = structured(attrs, envelope.data)
        except Exception as exc:  # noqa: BLE001
            await self.dead_letter(message, exc)
            return

        def retried(attempt: int, error: str) -> None:
            metrics.WEBHOOK_DELIVERIES.labels("retried").inc()
            logger.warning("webhook attempt failed; retrying", extra={"ce_id": attrs["id"], "attempt": attempt, "error": error})

        result = await deliver(session, self.webhook, body, STRUCTURED_CONTENT_TYPE, on_retry=retried, message_id=attrs["id"])
        if result.delivered:
            metrics.WEBHOOK_DELIVERIES.labels("delivered").inc()
            logger.info("alert delivered to webhook", extra={"ce_id": attrs["id"], "attempts": result.attempts})
            return
        metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
        await self.dead_letter(message, WebhookDeliveryError(f"webhook POST failed: {result.error}"))

    # -- producing -----------------------------------------------------------------------------

    async def dead_letter(self, message: Any, exc: BaseException) -> None:
        """The runner's dead-letter headers, with the original value unless it is biometric."""
        reason = exc.reason if isinstance(exc, MessageError) else "stage_error"
        text = str(exc).replace("\n", " ")[:_ERROR_TEXT_LIMIT] or type(exc).__name__
        added = {
            "lfr_dlq_topic": message.topic,
            "lfr_dlq_partition": str(message.partition),
            "lfr_dlq_offset": str(message.offset),
            "lfr_dlq_service": SERVICE,
            "lfr_dlq_reason": reason,
            "lfr_dlq_error_class": type(exc).__name__,
            "lfr_dlq_error": text,
            "lfr_dlq_at_ms": str(now_ms()),
        }
        value, added[PAYLOAD_HEADER] = dead_letter_value(message.topic, message.value, message.headers)  # matches carry chips; alerts are personal
        headers = _header_items(message.headers) + [(name, text.encode()) for name, text in added.items()]
        key = message.key
        if not delivery.fits(key, value, headers, MAX_RECORD_BYTES):
            key, value, headers = self._truncated(key, added, message.topic)
        self.registry.validate("lfr.dlq.v1", added)
        logger.warning(
            "record dead-lettered",
            extra={"topic": message.topic, "partition": message.partition, "offset": message.offset,
                   "reason": reason, "error_class": type(exc).__name__, "payload": added[PAYLOAD_HEADER]},
        )
        await self._produce(self.dlq, key, value, headers, dead_letter_reason=reason, source_topic=message.topic)

    def _truncated(self, key: bytes | None, added: dict[str, str], source_topic: str) -> tuple[bytes | None, None, list[tuple[str, bytes]]]:
        """Headers and a truncation marker only: the record does not fit in one record with them."""
        added[PAYLOAD_HEADER] = delivery.PAYLOAD_TRUNCATED
        delivery.DEAD_LETTERS_TRUNCATED.labels(SERVICE, source_topic).inc()
        return delivery.truncated_key(key), None, [(name, text.encode()) for name, text in added.items()]

    async def _produce(
        self,
        topic: faust.TopicT,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        *,
        dead_letter_reason: str | None = None,
        source_topic: str = "",
    ) -> None:
        state = {"key": key, "value": value, "headers": headers}

        async def send() -> None:
            await topic.send(key=state["key"], value=state["value"], headers=state["headers"], force=True)

        def shrink(exc: BaseException) -> bool:
            """A dead letter the broker refuses as too large goes again as headers only."""
            if dead_letter_reason is None or state["value"] is None or "TooLarge" not in type(exc).__name__:
                return False
            added = {name: data.decode() for name, data in state["headers"] if name.startswith("lfr_dlq_")}
            state["key"], state["value"], state["headers"] = self._truncated(state["key"], added, source_topic)
            return True

        bound = self.settings.dead_letter_max_attempts if dead_letter_reason is not None else None
        if not await self._retrying(f"produce to {topic.get_topic_name()}", send, max_attempts=bound, on_error=shrink):
            DEAD_LETTERS_DROPPED.labels(SERVICE, source_topic, dead_letter_reason or "").inc()
            logger.error(
                "dead letter given up after bounded retries",
                extra={"topic": source_topic, "reason": dead_letter_reason, "attempts": bound, "policy": "dead-letter-bounded-retry"},
            )
            return
        if dead_letter_reason is None:
            common_metrics.MESSAGES_PRODUCED.labels(SERVICE, topic.get_topic_name()).inc()
        else:
            common_metrics.MESSAGES_DEAD_LETTERED.labels(SERVICE, source_topic, dead_letter_reason).inc()

    async def _retrying(
        self,
        what: str,
        attempt: Callable[[], Awaitable[None]],
        *,
        max_attempts: int | None = None,
        on_error: Callable[[BaseException], bool] | None = None,
    ) -> bool:
        """Retry a broker write with exponential backoff until it is acknowledged.

        Outputs and changelog writes are never dropped (``max_attempts`` None); a dead letter
        is given up after ``max_attempts`` (False is returned). A stop request (SIGTERM) ends
        the retries by cancelling: the event stays unacked, so a restart re-delivers it.
        """
        delay = self.settings.retry_backoff_initial_s
        attempts = 0
        while True:
            if self.stopping.is_set():
                raise asyncio.CancelledError(f"stop requested during {what}")
            try:
                await attempt()
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker or network; the data is fine
                attempts += 1
                if on_error is not None and on_error(exc):
                    continue  # the record was changed to fit; try it now
                if max_attempts is not None and attempts >= max_attempts:
                    return False
                common_metrics.TRANSIENT_RETRIES.labels(SERVICE).inc()
                logger.warning("broker write failed; retrying", extra={"what": what, "error_class": type(exc).__name__, "retry_in_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.retry_backoff_max_s)


# -- process -------------------------------------------------------------------------------------


class DispatchWorker(faust.Worker):
    """faust's worker with our JSON logs kept, no stdout banner, and a bounded drain."""

    def __init__(self, app: faust.App, shutdown_timeout_s: float, stopping: threading.Event | None = None) -> None:
        super().__init__(app, quiet=True, override_logging=False, redirect_stdouts=False, loglevel=None)
        self.spinner = None
        self._stopping = stopping or threading.Event()
        self._shutdown_timeout_s = shutdown_timeout_s
        self._watchdog: threading.Timer | None = None

    def _on_sigterm(self) -> None:
        self._arm_watchdog()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm_watchdog()
        super()._on_sigint()

    def _arm_watchdog(self) -> None:
        self._stopping.set()
        if self._watchdog is None:
            logger.info("stop requested; draining")
            self._watchdog = threading.Timer(self._shutdown_timeout_s, self._drain_timed_out)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _drain_timed_out(self) -> None:
        logger.error("drain did not finish in time; exiting without commit", extra={"timeout_s": self._shutdown_timeout_s})
        os._exit(3)

    def run(self) -> int:
        try:
            self.execute_from_commandline()
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0


def _quiet_faust(level: str) -> None:
    # faust and mode are chatty at INFO, and at DEBUG faust logs record keys and values.
    floor = logging.INFO if level == "DEBUG" else logging.WARNING
    # (Our faust subclasses in faust_fixes log under that module's name.)
    for name in ("faust", "mode", "services.pipeline.dispatch.faust_fixes"):
        logging.getLogger(name).setLevel(floor)
    # faust.topics logs a failed send with the whole pending message (the chip included).
    logging.getLogger("faust.topics").setLevel(logging.ERROR)


def main() -> int:
    settings = start_service(SERVICE, DispatchSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    _quiet_faust(settings.log_level)
    try:
        partitions = settings.table_partitions or input_partitions(settings)
    except TimeoutError as exc:
        logger.error("cannot start", extra={"error": str(exc)})
        return 1
    try:
        view, policy = start_enforcement(settings, SERVICE)
    except (TimeoutError, RuntimeError) as exc:
        logger.error("cannot start", extra={"error": str(exc)})
        return 1
    own_datadir = settings.state_dir is None
    datadir = Path(tempfile.mkdtemp(prefix="lfr-dispatch-")) if own_datadir else settings.state_dir
    try:
        dispatcher = Dispatcher(settings, partitions, datadir, deployments=policy)
        logger.info(
            "dispatcher starting",
            extra={"policy": POLICY, "group_id": settings.group_id, "input_topic": settings.input_topic,
                   "output_topic": settings.output_topic, "dlq_topic": settings.dlq_topic, "cooldown_s": settings.cooldown_s,
                   "partitions": partitions, "changelog_topic": dispatcher.table.changelog_topic.get_topic_name(),
                   "webhook": dispatcher.webhook is not None},
        )
        dispatcher.sealer.start()
        try:
            code = DispatchWorker(dispatcher.app, settings.shutdown_timeout_s, dispatcher.stopping).run()
        finally:
            dispatcher.sealer.stop()
        logger.info("dispatcher stopped", extra={"exit_code": code})
        return code
    finally:
        view.stop()
        if own_datadir:
            shutil.rmtree(datadir, ignore_errors=True)
