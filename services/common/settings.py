"""Settings: one class per service, read once at start from ``LFR_*`` environment variables.

Every field is bounded; secrets are ``SecretStr`` so they never print. ``load_settings``
turns a validation failure into one message naming each offending variable, so a bad
deployment fails at start instead of misbehaving later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import SettingsError

ENV_PREFIX = "LFR_"
TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class LfrSettings(BaseSettings):
    """Settings every service has."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(9100, ge=0, le=65535, description="Prometheus /metrics port; 0 turns the endpoint off")


class KafkaSettings(LfrSettings):
    """How to reach Kafka: any Kafka-protocol cluster, optionally with TLS and SASL."""

    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", min_length=3, max_length=2048)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = Field(None, max_length=256)
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: Path | None = None
    kafka_ssl_certificate_location: Path | None = None
    kafka_ssl_key_location: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_client_id: str = Field("openlfr", pattern=r"^[A-Za-z0-9._-]{1,128}$")

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, value in (
                    ("LFR_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                    ("LFR_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("LFR_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"{', '.join(missing)} required when LFR_KAFKA_SECURITY_PROTOCOL is SASL_*")
        return self


class RunnerSettings(KafkaSettings):
    """Settings of a consume-process-produce service (the Kafka runner)."""

    group_id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    dlq_topic: TopicName = "lfr.dlq.v1"
    batch_max_messages: int = Field(64, ge=1, le=10_000)
    poll_timeout_ms: int = Field(250, ge=1, le=60_000)
    session_timeout_ms: int = Field(45_000, ge=3_000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=60_000)
    max_poll_interval_ms: int = Field(300_000, ge=10_000, le=3_600_000)
    auto_commit_interval_ms: int = Field(1_000, ge=100, le=60_000)
    retry_backoff_initial_s: float = Field(0.2, gt=0, le=60)
    retry_backoff_max_s: float = Field(10.0, gt=0, le=600)
    shutdown_timeout_s: float = Field(30.0, gt=0, le=600)
    lag_report_interval_s: float = Field(5.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> RunnerSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("LFR_HEARTBEAT_INTERVAL_MS must be at most a third of LFR_SESSION_TIMEOUT_MS")
        return self


class PassthroughSettings(RunnerSettings):
    """The pass-through service: copies messages from input topics to one output topic."""

    group_id: str = Field("lfr-passthrough", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    input_topics: Annotated[tuple[TopicName, ...], NoDecode] = Field(min_length=1, max_length=64)
    output_topic: TopicName

    @field_validator("input_topics", mode="before")
    @classmethod
    def _split_topics(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


S = TypeVar("S", bound=LfrSettings)


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(cls: type[S], **overrides: object) -> S:
    """Read ``cls`` from the environment; raise SettingsError naming every bad variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            location = error.get("loc") or ()
            field = str(location[0]) if location else ""
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{env_name(field)}: {message}" if field else message)
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
