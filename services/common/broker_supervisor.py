"""Keeps the embedded broker (`lfr broker`) usable: restarts it when it dies, re-applies the
topics it forgot, and watches its memory.

Tansu with memory storage keeps every record until it stops and loses everything when it
stops: topics (watchlists, deployments, audit included), records and committed offsets. So a
restart must re-create the topics from topics.toml before any client needs them (clients no
longer auto-create topics), and the services re-enrol nothing themselves: the demo re-enrols.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient
from prometheus_client import Counter, Gauge

from .broker import EmbeddedBroker
from .topics import TopicSpec, apply_topics

logger = logging.getLogger(__name__)

BROKER_RSS = Gauge("lfr_embedded_broker_rss_bytes", "Resident memory of the embedded Tansu broker process")
BROKER_RESTARTS = Counter("lfr_embedded_broker_restarts_total", "Times `lfr broker` restarted a broker that had exited")


def process_rss_bytes(pid: int) -> int | None:
    """Resident set size of a process from /proc (Linux); None when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class BrokerSupervisor:
    """Runs one EmbeddedBroker; ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        specs: list[TopicSpec],
        *,
        memory_warn_bytes: int,
        check_interval_s: float = 1.0,
        memory_report_interval_s: float = 60.0,
        report: Callable[[str], None] = print,
    ) -> None:
        self.broker = broker
        self.specs = specs
        self.memory_warn_bytes = memory_warn_bytes
        self.check_interval_s = check_interval_s
        self.memory_report_interval_s = memory_report_interval_s
        self.report = report
        self.restarts = 0
        self._stop = threading.Event()
        self._warned = False
        self._next_memory_report = 0.0

    def start(self) -> str:
        bootstrap = self.broker.start()
        self.apply_topics()
        self.check_memory()  # the first report right away, then every memory_report_interval_s
        return bootstrap

    def apply_topics(self) -> None:
        if not self.specs:
            return
        admin = AdminClient({"bootstrap.servers": self.broker.bootstrap_servers})
        results = apply_topics(admin, self.specs)
        created = sum(1 for r in results if r.action == "created")
        logger.info("topics applied", extra={"topics_created": created, "topics": len(results)})

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Watch the broker until stopped: restart it when it exits, report memory."""
        while not self._stop.wait(self.check_interval_s):
            if not self.broker.running:
                self._restart()
                continue
            self.check_memory()
        self.broker.stop()
        return 0

    def _restart(self) -> None:
        self.report(
            f"lfr broker: broker exited (code {self.broker.returncode}); restarting it. "
            "Memory storage: every topic, record and committed offset is gone; re-applying topics "
            "(watchlists, deployments and audit are empty: re-enrol)"
        )
        logger.error("embedded broker exited; restarting and re-applying topics", extra={"restarts": self.restarts})
        self.broker.stop()
        try:
            self.broker.start()
            self.apply_topics()
        except Exception as exc:  # noqa: BLE001 - try again on the next check
            logger.error("embedded broker restart failed", extra={"error": str(exc)[:200]})
            return
        self.restarts += 1
        BROKER_RESTARTS.inc()

    def check_memory(self) -> int | None:
        rss = self.broker.rss_bytes()
        if rss is None:
            return None
        BROKER_RSS.set(rss)
        now = time.monotonic()
        if now >= self._next_memory_report:
            self._next_memory_report = now + self.memory_report_interval_s
            self.report(f"lfr broker: memory {rss / 2**20:.0f} MiB (warns past {self.memory_warn_bytes / 2**20:.0f} MiB)")
        if rss > self.memory_warn_bytes and not self._warned:
            self._warned = True
            self.report(
                f"lfr broker: WARNING memory {rss / 2**20:.0f} MiB is past {self.memory_warn_bytes / 2**20:.0f} MiB: "
                "the embedded broker keeps every record until it stops; restart it (it loses all topics) "
                "or use a real Kafka cluster"
            )
            logger.warning("embedded broker memory past the bound", extra={"rss_bytes": rss, "bound_bytes": self.memory_warn_bytes})
        elif rss <= self.memory_warn_bytes:
            self._warned = False
        return rss
