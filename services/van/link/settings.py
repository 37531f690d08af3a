"""Settings of the link (`lfr run link`): the van's broker (LFR_KAFKA_*), the core's, the outbox, the cap."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from services.common.settings import KafkaSettings


class LinkSettings(KafkaSettings):
    """LFR_KAFKA_BOOTSTRAP_SERVERS is the van's broker; LFR_LINK_CORE_* is the force's core,
    which the van connects to (outbound only: the van opens no port)."""

    van_id: str = Field("van-1", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="this van's id, stamped on every forwarded record")
    link_core_bootstrap_servers: str = Field(min_length=3, max_length=2048, description="the core's Kafka (host:port[,host:port])")
    link_core_security_protocol: str = Field("PLAINTEXT", pattern=r"^(PLAINTEXT|SSL)$", description="SSL in production (mutual TLS per van)")
    link_core_ssl_ca_location: Path | None = None
    link_core_ssl_certificate_location: Path | None = Field(None, description="this van's client certificate (its identity at the core)")
    link_core_ssl_key_location: Path | None = None
    link_core_ssl_key_password: SecretStr | None = None
    link_core_topic: str = Field("lfr-link-inbound", pattern=r"^([A-Za-z0-9._-]{1,249})?$",
                                 description="the core intake's landing topic: the core checks each record before its own topics see it; empty = straight to each record's own topic (no check at the core)")
    link_outbox_path: Path = Field(Path("var/van/outbox.sqlite"), description="the durable queue (SQLite, WAL); put it on the van's persistent disk")
    link_topics: str = Field("", max_length=4096, description="comma-separated outcome topics; empty = every outcome topic of topics.toml")
    link_group_id: str = Field("lfr-link", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    link_bandwidth_bytes_per_s: int = Field(0, ge=0, le=10**9, description="cap on forwarded bytes per second (0 = no cap); waits are counted")
    link_burst_bytes: int = Field(1_048_576, ge=1024, le=10**9, description="bytes the cap lets through at once after an idle spell")
    link_batch_max: int = Field(500, ge=1, le=10_000, description="records taken in, or sent, per step")
    link_max_in_flight: int = Field(2000, ge=1, le=100_000, description="records sent and not yet acknowledged by the core")
    link_poll_timeout_ms: int = Field(200, ge=1, le=10_000)
    link_down_after_s: float = Field(10.0, gt=0, le=3600, description="link reported down when records wait this long without an acknowledgement")
    link_rebuild_after_s: float = Field(30.0, ge=1, le=3600, description="no acknowledgement this long: rebuild the core producer and resend unsent rows in order")
    link_sent_memory_h: float = Field(24.0, gt=0, le=24 * 31, description="ids of sent records kept this long, so one taken in again is not resent")
    session_timeout_ms: int = Field(45_000, ge=3_000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=60_000)

    def topics(self) -> list[str]:
        return [t.strip() for t in self.link_topics.split(",") if t.strip()]
