"""`lfr run link`: the van's outcome forwarder as a process (stops cleanly on SIGTERM)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

from services.common.kafka_config import client_config, producer_config
from services.common.service import EXIT_BAD_SETTINGS, start_service

from .bandwidth import TokenBucket
from .egress import EgressRefused, outcome_topics
from .forwarder import Forwarder
from .outbox import Outbox
from .settings import LinkSettings

logger = logging.getLogger(__name__)
SERVICE = "link"


def core_producer_config(settings: LinkSettings) -> dict[str, Any]:
    """The van's producer to the core: idempotent, acks=all, and no delivery timeout (the outbox
    holds the rows; librdkafka retries in order until the link is back)."""
    config = {
        **producer_config(settings),
        "bootstrap.servers": settings.link_core_bootstrap_servers,
        "security.protocol": settings.link_core_security_protocol,
        "client.id": f"lfr-link-{settings.van_id}",
        "message.timeout.ms": 0,
        "max.in.flight.requests.per.connection": 5,
        "reconnect.backoff.max.ms": 10_000,
    }
    for name in ("sasl.mechanism", "sasl.username", "sasl.password"):
        config.pop(name, None)  # the van's broker credentials never go to the core
    for option, value in (("ssl.ca.location", settings.link_core_ssl_ca_location),
                          ("ssl.certificate.location", settings.link_core_ssl_certificate_location),
                          ("ssl.key.location", settings.link_core_ssl_key_location)):
        config.pop(option, None)
        if value is not None:
            config[option] = str(value)
    config.pop("ssl.key.password", None)
    if settings.link_core_ssl_key_password is not None:
        config["ssl.key.password"] = settings.link_core_ssl_key_password.get_secret_value()
    return config


def build(settings: LinkSettings) -> Forwarder:
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415

    topics = outcome_topics(only=settings.topics())
    if not settings.topics() and settings.force != "default":  # LFR_FORCE: the force's own outcome topics
        from services.governance.forces.naming import force_topic  # noqa: PLC0415

        topics = [force_topic(settings.force, topic) for topic in topics]
    consumer = Consumer({
        **client_config(settings), "group.id": settings.link_group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms, "heartbeat.interval.ms": settings.heartbeat_interval_ms,
    })
    config = core_producer_config(settings)
    return Forwarder(
        van_id=settings.van_id, topics=topics, outbox=Outbox(settings.link_outbox_path), consumer=consumer,
        producer_factory=lambda on_error: Producer({**config, "error_cb": on_error}),
        bucket=TokenBucket(settings.link_bandwidth_bytes_per_s, settings.link_burst_bytes, time.monotonic()),
        batch_max=settings.link_batch_max, max_in_flight=settings.link_max_in_flight,
        poll_timeout_s=settings.link_poll_timeout_ms / 1000, down_after_s=settings.link_down_after_s,
        rebuild_after_s=settings.link_rebuild_after_s,
        sent_memory_s=settings.link_sent_memory_h * 3600, core_topic=settings.link_core_topic,
    )


def main() -> int:
    settings = start_service(SERVICE, LinkSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    try:
        forwarder = build(settings)
    except EgressRefused as exc:
        print(f"lfr link: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    logger.info("link forwarding", extra={"topics": ",".join(forwarder.topics), "van_id": settings.van_id})
    while not stop.is_set():
        forwarder.step()
    forwarder.close()
    return 0
