"""librdkafka client configuration built from KafkaSettings (TLS/SASL included)."""

from __future__ import annotations

import logging
from typing import Any

from .delivery import MAX_RECORD_BYTES
from .settings import KafkaSettings, RunnerSettings


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        "client.id": settings.kafka_client_id,
        # librdkafka's own log lines go through Python logging, so they come out as JSON too.
        "logger": logging.getLogger("librdkafka"),
        # Never let a client create a topic by naming it: after an embedded-broker restart that
        # made topics with the broker's default partitions, which `lfr topics apply` cannot fix.
        "allow.auto.create.topics": False,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    for key, value in (
        ("ssl.ca.location", settings.kafka_ssl_ca_location),
        ("ssl.certificate.location", settings.kafka_ssl_certificate_location),
        ("ssl.key.location", settings.kafka_ssl_key_location),
    ):
        if value:
            config[key] = str(value)
    if settings.kafka_ssl_key_password:
        config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    return config


def producer_config(settings: KafkaSettings) -> dict[str, Any]:
    return {
        **client_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "none",  # JPEG and float payloads do not compress
        "message.max.bytes": MAX_RECORD_BYTES,
    }


def consumer_config(settings: RunnerSettings) -> dict[str, Any]:
    return {
        **client_config(settings),
        "group.id": settings.group_id,
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": settings.auto_commit_interval_ms,
        # Offsets are stored by the runner only once a batch's outputs are acknowledged.
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "enable.partition.eof": False,
        # Latency per hop when caught up (issue #17): see RunnerSettings.fetch_wait_max_ms.
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
    }


def broker_reachable_check(settings: KafkaSettings):
    """A readiness check (services.common.health): the cluster answers a metadata request.

    Its own AdminClient: a consumer that another thread is polling blocks a concurrent
    list_topics call (confluent-kafka 2.16), so probes must never borrow the service's client.
    """
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - keep this module import-light

    admin = AdminClient(client_config(settings))

    def check() -> tuple[bool, str]:
        brokers = admin.list_topics(timeout=2).brokers
        return bool(brokers), f"{len(brokers)} broker(s) reachable"

    return check
