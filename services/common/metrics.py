"""Prometheus metrics shared by every runner. Labels are bounded: service, topic, partition, reason."""

from __future__ import annotations

import importlib.metadata
import logging
import platform

from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

MESSAGES_CONSUMED = Counter("lfr_messages_consumed_total", "Records consumed", ["service", "topic"])
MESSAGES_PRODUCED = Counter("lfr_messages_produced_total", "Records produced and acknowledged", ["service", "topic"])
MESSAGES_DEAD_LETTERED = Counter(
    "lfr_messages_dead_lettered_total", "Records sent to the dead-letter topic", ["service", "topic", "reason"]
)
TRANSIENT_RETRIES = Counter("lfr_transient_retries_total", "Batches retried after a transient error", ["service"])
REDELIVERIES = Counter("lfr_batch_redeliveries_total", "Batches rewound for redelivery (retries exhausted or produce failed)", ["service"])
FATAL_ERRORS = Counter(
    "lfr_fatal_errors_total", "Fatal errors that stopped the service (alert on any increase)", ["service", "reason"]
)
CONSUMER_ERRORS = Counter("lfr_consumer_errors_total", "Errors reported by the Kafka consumer", ["service"])
STAGE_DURATION = Histogram(
    "lfr_stage_duration_seconds",
    "Time in the stage function per batch",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "lfr_batch_size_messages", "Records per consumed batch", ["service"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
)
CONSUMER_LAG = Gauge(
    "lfr_consumer_lag_messages", "Records behind the partition's high watermark", ["service", "topic", "partition"]
)
BUILD_INFO = Gauge("lfr_build_info", "The running build (always 1): package version and Python version", ["version", "python"])
ASSIGNED_PARTITIONS = Gauge("lfr_assigned_partitions", "Partitions currently assigned to this consumer", ["service"])


def build_version() -> str:
    try:
        return importlib.metadata.version("openlfr")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


BUILD_INFO.labels(build_version(), platform.python_version()).set(1)


def start_metrics_server(port: int) -> None:
    """Serve /metrics, /livez and /readyz on ``port`` (services.common.health); 0 leaves them off."""
    from . import health

    health.serve(port)
