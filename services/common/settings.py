"""Settings: one class per service, read once at start from ``LFR_*`` environment variables.

Every field is bounded; secrets are ``SecretStr`` so they never print. ``load_settings``
turns a validation failure into one message naming each offending variable, so a bad
deployment fails at start instead of misbehaving later.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import SettingsError

ENV_PREFIX = "LFR_"
TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


@functools.lru_cache(maxsize=1)
def _platform_topics() -> frozenset[str]:
    from .topics import load_topic_specs  # noqa: PLC0415

    return frozenset(spec.name for spec in load_topic_specs() if spec.platform)


class LfrSettings(BaseSettings):
    """Settings every service has."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(9100, ge=0, le=65535, description="Prometheus /metrics port; 0 turns the endpoint off")
    liveness_timeout_s: float = Field(
        120.0, ge=1, le=3600, description="/livez fails when the processing loop made no progress for this long"
    )


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
    force: str = Field("default", max_length=32, pattern=r"^[a-z](?:-?[a-z0-9]){1,31}$",
                       description="the force (tenant) this process serves; its topics and principal follow (services/governance/forces)")

    @model_validator(mode="before")
    @classmethod
    def _force_names(cls, data: object) -> object:
        """LFR_FORCE=F alone moves every topic and the group this process uses under lfr.F.
        (services/governance/forces/naming.py); a name set explicitly is kept, and the start-up check
        (services/governance/forces/grants.py) holds it to the force's principal. Platform topics stay."""
        force = data.get("force") if isinstance(data, dict) else None
        if not isinstance(force, str) or force == "default":
            return data
        from services.governance.forces.naming import NamingError, force_topic  # noqa: PLC0415

        platform = _platform_topics()
        for name, info in cls.model_fields.items():
            if (name.endswith("_topic") or name == "group_id") and name not in data and isinstance(info.default, str) \
                    and info.default not in platform:
                try:
                    data[name] = force_topic(force, info.default)
                except NamingError:
                    return data  # the field's own pattern names the bad force id
        return data

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
        if self.kafka_sasl_mechanism == "PLAIN" and self.kafka_security_protocol != "SASL_SSL":
            # PLAIN sends the password as it is: only inside TLS.
            raise ValueError("LFR_KAFKA_SASL_MECHANISM=PLAIN needs LFR_KAFKA_SECURITY_PROTOCOL=SASL_SSL (PLAIN without TLS sends the password in clear)")
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
    stall_after_s: float = Field(
        60.0, ge=1, le=3600, description="Seconds without a successful produce or fetch, while work waits, before the service reports itself stalled"
    )
    fetch_wait_max_ms: int = Field(10, ge=1, le=5_000, description="longest a fetch waits for data; brokers that do not answer a long poll early (Tansu) add up to this per hop")

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


class EmbeddedBrokerSettings(LfrSettings):
    """`lfr broker` (the embedded Tansu broker for tests and the demo; not deployed by the chart)."""

    broker_memory_warn_mb: int = Field(
        2048, ge=64, le=1_048_576, description="warn when the broker process's resident memory passes this (it keeps every record until it stops)"
    )
    broker_memory_report_interval_s: float = Field(60.0, ge=1, le=86_400, description="how often `lfr broker` prints its memory")
    broker_check_interval_s: float = Field(1.0, gt=0, le=60, description="how often `lfr broker` checks the broker is alive")


class QdrantSettings(LfrSettings):
    """Where the watchlist index lives: a Qdrant server URL, else the embedded engine on a path."""

    qdrant_url: str | None = Field(None, max_length=2048, description="e.g. http://qdrant:6333; unset = the embedded engine")
    qdrant_api_key: SecretStr | None = None
    qdrant_path: str = Field("var/qdrant", min_length=1, max_length=4096, description='embedded index path, or ":memory:"')
    qdrant_embedded: Literal["edge", "local"] = Field(
        "edge", description="embedded engine without a URL: edge = Qdrant in process (qdrant-edge-py), local = qdrant-client local mode (slow filters)"
    )


class FaceEngineSettings(LfrSettings):
    """onnxruntime threads and the converted-model cache shared by detect, embed and enrolment."""

    model_cache_dir: Path | None = None
    intra_op_threads: int = Field(1, ge=1, le=64)


class MatchThresholdSettings(LfrSettings):
    """Per-category match thresholds: used by the matcher, and by enrolment's look-alike check."""

    match_threshold_default: float = Field(0.5, ge=-1.0, le=1.0)
    match_thresholds: str = Field("", max_length=4096, description='JSON object, e.g. {"missing_person_at_risk": 0.45}')

    @field_validator("match_thresholds")
    @classmethod
    def _thresholds_json(cls, value: str) -> str:
        from services.governance.watchlist.thresholds import Thresholds  # noqa: PLC0415 - avoid a cycle at import

        Thresholds.parse(0.5, value)
        return value


# -- security (signed changes, the audit chain) ------------------------------------------------
class KeyringSettings(LfrSettings):
    """Whom this process trusts: signed records are applied only if they verify against the keyring."""

    keyring_file: Path | None = Field(None, description="trusted public keys and revocations (JSON, `lfr keys`; a mounted Secret in Kubernetes)")


class SigningSettings(KeyringSettings):
    """Who this process signs as (an encrypted private key) and whom it trusts (the keyring).
    Every audit record is chained and signed; every watchlist change is signed."""

    signing_key_file: Path | None = Field(None, description="this process's private key file from `lfr keys create` (encrypted with the passphrase)")
    signing_key_passphrase: SecretStr | None = Field(None, description="passphrase of the signing key")
    audit_topic: TopicName = "lfr.audit.v2"
    audit_partition: int = Field(0, ge=0, le=1023, description="the audit partition (one hash chain) this process appends to")


class AuditSettings(KafkaSettings, SigningSettings):
    """`lfr audit` and `lfr keys`: read the audit chain, manage keys. (Audit retention is the
    lfr.audit.v2 retention.ms in topics.toml: 7 years by default.)"""


class LatencyBudgetSettings(LfrSettings):
    """Stale policy skip-stale/keep-first-shots (issue #17, services/common/staleness.py): work older
    than the budget, counted from capture, is skipped, except a track's first shot up to its own budget."""

    latency_budget_ms: int = Field(1_500, ge=50, le=600_000, description="faces captured longer ago than this are skipped, counted, never processed")
    first_shot_budget_ms: int = Field(4_000, ge=50, le=600_000, description="a track's first shot is still processed up to this age (a late alert for a person not yet checked beats none); later shots follow latency_budget_ms")


class WatchlistSettings(KafkaSettings, QdrantSettings, FaceEngineSettings, MatchThresholdSettings, SigningSettings):
    """`lfr watchlist` and `lfr eval`: who writes to the watchlist and audit topics."""

    watchlist_topic: TopicName = "lfr.watchlist.v1"
    watchlist_max_entry_lifetime_days: float = Field(366.0, gt=0, le=3660, description="an entry's expiry may be at most this far after enrolment")


class DlqSettings(KafkaSettings, SigningSettings):
    """`lfr dlq`: the dead-letter topic it reads, and the audit topic replays are recorded on."""

    dlq_topic: TopicName = "lfr.dlq.v1"
    audit_topic: TopicName = "lfr.audit.v2"
    dlq_read_timeout_s: float = Field(60.0, gt=0, le=3600, description="how long reading the dead-letter topic to its end may take")


# -- deployments (services/governance/deployments) ----------------------------------------------------------


class AuditLinkSettings(LfrSettings):
    """A live reader of governed topics: a change applies only when its audit record is found (services/governance/audit/index.py)."""

    audit_topic: TopicName = Field("lfr.audit.v2", description="the audit trail each applied change's audit record must be found in")
    audit_link_wait_s: float = Field(10.0, ge=0, le=600, description="how long a signed change whose audit record is not readable yet is held before it is refused (policy hold-then-refuse)")


class DeploymentEnforcementSettings(KeyringSettings, AuditLinkSettings):
    """How a pipeline service reads and enforces deployments (services/governance/deployments/policy.py).
    Only deployment records signed by a key of the keyring are applied."""

    deployments_topic: TopicName = "lfr.deployments.v1"
    deployment_clock_skew_ms: int = Field(2_000, ge=0, le=60_000, description="records captured this close outside a window still count as inside")
    deployments_load_timeout_s: float = Field(60.0, gt=0, le=3600, description="how long to wait at start for the deployments topic to load")


class ForceRegistrySettings(KafkaSettings, KeyringSettings):
    """Who reads the force registry (services/governance/forces): its topic, the keyring and audit topic its
    records are verified against, and how long reading it may take."""

    forces_topic: TopicName = "lfr.forces.v1"
    audit_topic: TopicName = "lfr.audit.v2"
    forces_read_timeout_s: float = Field(30.0, gt=0, le=3600, description="how long reading the force registry to its end may take")


class ForceSettings(WatchlistSettings, ForceRegistrySettings):
    """`lfr forces`: the force registry (every change signed and audited like a deployment's)."""


class DeploymentSettings(WatchlistSettings):
    """`lfr deployment`: create, authorise, start, end, cancel; erasure of ended snapshots."""

    deployments_topic: TopicName = "lfr.deployments.v1"
    deployment_min_rank: str = Field("superintendent", pattern=r"^[a-z_]{3,40}$", description="lowest rank that may authorise (UK police ranks)")
    deployment_max_window_h: float = Field(12.0, gt=0, le=168, description="longest time window a deployment may have")
    deployment_threshold_floor: float | None = Field(None, ge=-1.0, le=1.0, description="unset = the calibrated floor; lowering it needs the override reason")
    deployment_threshold_floor_override_reason: str | None = Field(None, max_length=1024, description="recorded with every authorisation under a lowered floor")
    deployment_false_alerts_limit_per_hour: float = Field(1.0, ge=0, le=10_000, description="above this the authoriser must record a justification")
    deployment_erase_after_h: float = Field(24.0, ge=0, le=720, description="a snapshot is erased this long after its deployment ends")
    calibration_dir: Path | None = Field(None, description="unset = services/engine/face/calibration")

    @field_validator("deployment_min_rank")
    @classmethod
    def _known_rank(cls, value: str) -> str:
        from services.governance.deployments.record import rank_level  # noqa: PLC0415 - avoid a cycle at import

        if rank_level(value) is None:
            raise ValueError(f"unknown rank {value}")
        return value


class DeploymentEventsSettings(KafkaSettings, KeyringSettings):
    """`lfr run deployment-events`: verified deployment revisions projected onto the public topic
    (services/governance/deployments/projector.py); only records signed, audited and countersigned count."""

    deployments_topic: TopicName = "lfr.deployments.v1"
    audit_topic: TopicName = Field("lfr.audit.v2", description="the audit trail each deployment change must name (read only)")
    deployment_events_topic: TopicName = Field("lfr.deployment_events.v1", description="public deployment events (plain JSON CloudEvents)")
    group_id: str = Field("lfr-deployment-events", pattern=r"^[A-Za-z0-9._-]{1,249}$",
                          description="its committed offset on the deployments topic: what is already projected")
    ce_source_prefix: str = Field("/openlfr", pattern=r"^[A-Za-z0-9][A-Za-z0-9+.-]*:[^\s]*$|^/[^\s]*$", max_length=256,
                                  description="ce_source of an event: <prefix>/deployments/<deployment id>")
    poll_timeout_ms: int = Field(250, ge=1, le=60_000, description="longest wait for new deployment records per poll")
    publish_timeout_s: float = Field(30.0, gt=0, le=600, description="a batch of events not acknowledged within this stops the "
                                     "projector uncommitted (its supervisor restarts it; the batch is projected again)")


class MatcherSettings(RunnerSettings, QdrantSettings, MatchThresholdSettings, DeploymentEnforcementSettings, SigningSettings, LatencyBudgetSettings):
    """The matcher service."""

    group_id: str = Field("lfr-matcher", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    input_topic: TopicName = "lfr.embeddings.v1"
    output_topic: TopicName = "lfr.matches.v1"
    watchlist_topic: TopicName = "lfr.watchlist.v1"
    audit_topic: TopicName = "lfr.audit.v2"
    qdrant_path: str = Field(":memory:", min_length=1, max_length=4096, description="the index is rebuilt from the topic at start")
    match_top_k: int = Field(
        3, ge=1, le=50, description="candidates searched per face; only the best at or above threshold becomes a match (the others ride in it)"
    )
    watchlist_load_timeout_s: float = Field(120.0, gt=0, le=3600)
    expiry_sweep_interval_s: float = Field(10.0, gt=0, le=3600)


class IngestSettings(KafkaSettings, DeploymentEnforcementSettings):
    """The ingest service: cameras file in, lfr.frames.v1 out."""

    cameras_file: Path = Path("cameras.json")
    output_topic: TopicName = "lfr.frames.v1"
    frame_queue_size: int = Field(4, ge=1, le=1000, description="frames queued per camera before the oldest is dropped")
    max_frame_age_ms: int = Field(2_000, ge=50, le=600_000, description="older frames are dropped, never sent")
    reconnect_backoff_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_backoff_max_s: float = Field(30.0, gt=0, le=600)
    stream_open_timeout_s: float = Field(10.0, gt=0, le=300, description="an RTSP/HTTP camera that does not answer within this is retried with backoff")
    stream_read_timeout_s: float = Field(5.0, gt=0, le=300, description="a stream stalled this long is reopened (reconnect with backoff)")
    backpressure_enabled: bool = Field(True, description="lower each camera's analysed rate while detect is behind (policy aimd-detect-lag/v1)")
    detect_group_id: str = Field("lfr-detect", pattern=r"^[A-Za-z0-9._-]{1,249}$", description="detect's consumer group, whose committed offsets on the output topic say how far behind it is")
    backpressure_poll_s: float = Field(1.0, ge=0.1, le=60, description="how often detect's lag is read and each camera's rate adjusted")
    backpressure_max_lag_s: float = Field(2.0, gt=0, le=600, description="age of the oldest frame detect has not committed above which a camera's analysed rate halves")
    backpressure_recover_lag_s: float = Field(1.5, gt=0, le=600, description="below this lag the analysed rate rises by 1 fps per poll, up to the camera's fps")
    backpressure_min_fps: float = Field(1.0, ge=0.1, le=60, description="the analysed rate never goes below this (tracking needs a steady rate)")
    config_poll_interval_s: float = Field(1.0, gt=0, le=60)
    shutdown_timeout_s: float = Field(10.0, gt=0, le=600)
    truth_dir: Path | None = Field(None, description="synthetic cameras write ground truth here (demo, tests)")
    dlq_topic: TopicName = "lfr.dlq.v1"
    stall_after_s: float = Field(
        30.0, ge=1, le=3600, description="Seconds with frames waiting and no delivery before ingest reports itself stalled"
    )


class DetectSettings(RunnerSettings, FaceEngineSettings, DeploymentEnforcementSettings):
    """The detect service: frames in, quality-accepted aligned faces out."""

    group_id: str = Field("lfr-detect", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    input_topic: TopicName = "lfr.frames.v1"
    output_topic: TopicName = "lfr.faces.v1"
    counts_topic: TopicName = Field("lfr.counts.v2", description="faces the detector found per deployment (counts, never faces), for the transparency report")
    batch_max_messages: int = Field(32, ge=1, le=256, description="frames taken per batch when detect is behind: skip-superseded then keeps each camera's newest (the model runs at most 8 at a time)")
    detector_score_threshold: float = Field(0.6, ge=0.0, le=1.0)
    max_frame_age_ms: int = Field(1_000, ge=50, le=600_000, description="stale frames are dropped unprocessed; keep it below embed's and the matcher's LFR_LATENCY_BUDGET_MS, or every face detect sends is already too old for them")
    superseded_after_ms: int = Field(250, ge=0, le=600_000, description="a frame this old with a newer frame of its camera in the same batch is skipped (detect is behind)")
    max_frame_pixels: int = Field(3840 * 2160, ge=64 * 64, le=8192 * 8192)
    min_face_width_px: float = Field(
        40.0, ge=32, le=2000,
        description="policy min-face-width/v1: a narrower face is tracked but never embedded, so never alerts (counted as too_small); never below 32 px, too small to judge")
    min_interocular_px: float = Field(15.0, ge=4, le=1000)
    min_detector_score: float = Field(0.7, ge=0.0, le=1.0)
    max_abs_roll_deg: float = Field(30.0, ge=0, le=90)
    max_abs_yaw: float = Field(0.45, ge=0, le=2)
    min_blur: float = Field(15.0, ge=0, le=10_000)
    # Small faces at distance (services/pipeline/detect/views.py; issue #27): per camera
    tile_cameras: str = Field(
        "", pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]{0,63}(,[A-Za-z0-9][A-Za-z0-9._:-]{0,63})*)?$", max_length=4096,
        description="comma-separated camera ids detected in overlapping tiles on top of the whole frame (policy tiles-plus-whole/v1), * = every camera; each costs 1 + tiles detector runs per frame")
    tile_columns: int = Field(2, ge=2, le=8, description="tiles across a tiled camera's frame (rows follow so tiles are about square): 2 on 1080p = 4 tiles, 5 detector runs per frame")
    tile_overlap: float = Field(0.2, ge=0.05, le=0.5, description="fraction of a tile shared with each neighbour; a face narrower than the overlap is always whole in one tile")
    detect_regions: str = Field(
        "", max_length=4096,
        description='per camera, the only part of the frame detect looks at, as fractions: {"camera-id": [x1, y1, x2, y2]}; empty = whole frames')
    # Tracking and shot selection (services/engine/tracking/; issue #17)
    tracking_enabled: bool = Field(True, description="track faces per camera and embed only the best shots; off = embed every accepted face")
    track_max_shots: int = Field(3, ge=1, le=100, description="K: most shots a track sends to embed per refresh window")
    track_shot_margin: float = Field(0.25, ge=0, le=10, description="a later shot is sent only if its quality beats the best so far by this fraction")
    track_refresh_s: float = Field(10.0, ge=0.5, le=3600, description="a long track opens a new window (K shots again) this often")
    track_ttl_s: float = Field(3.0, ge=0.1, le=60, description="a track unseen this long is dropped from memory")

    @field_validator("detect_regions")
    @classmethod
    def _regions_json(cls, value: str) -> str:
        from services.pipeline.detect.views import parse_regions  # noqa: PLC0415 - the stage's parser, one rule

        parse_regions(value)
        return value


class EmbedSettings(RunnerSettings, FaceEngineSettings, DeploymentEnforcementSettings, LatencyBudgetSettings):
    """The embed service: faces in, embeddings (with the chip as evidence) out."""

    group_id: str = Field("lfr-embed", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    input_topic: TopicName = "lfr.faces.v1"
    output_topic: TopicName = "lfr.embeddings.v1"
    batch_max_messages: int = Field(32, ge=1, le=512)
    flip_augment: bool | None = Field(None, description="unset = the face engine's measured default")


class DispatchSettings(KafkaSettings, DeploymentEnforcementSettings):
    """The alert dispatcher (faust): matches in, one alert per subject, camera and cooldown window out."""

    group_id: str = Field("lfr-dispatch", pattern=r"^[A-Za-z0-9._-]{1,200}$", description="faust app id and consumer group")
    input_topic: TopicName = "lfr.matches.v1"
    output_topic: TopicName = "lfr.alerts.v3"
    dlq_topic: TopicName = "lfr.dlq.v1"
    evidence_topic: TopicName = Field("lfr.evidence.v1", description="sealed probe chips, keyed by alert id")
    evidence_keys_topic: TopicName = Field("lfr.evidence_keys.v1", description="the review service's transit public keys")
    cooldown_s: float = Field(60.0, ge=1, le=3600, description="sightings closer than this to the last one join the open alert")
    state_grace_s: float = Field(3600.0, ge=0, le=86_400, description="state kept this long past the cooldown (covers redelivered matches)")
    table_partitions: int | None = Field(None, ge=1, le=1024, description="unset = the input topic's partition count")
    changelog_replication_factor: int = Field(1, ge=1, le=16)
    table_store: Literal["memory://", "rocksdb://"] = "memory://"
    state_dir: Path | None = Field(None, description="faust data directory; unset = a temporary directory")
    session_timeout_ms: int = Field(45_000, ge=3_000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=60_000)
    auto_commit_interval_ms: int = Field(1_000, ge=100, le=60_000)
    dead_letter_max_attempts: int = Field(
        8, ge=1, le=1000, description="writes of one dead letter before it is given up (counted in lfr_dead_letters_dropped_total)"
    )
    retry_backoff_initial_s: float = Field(0.2, gt=0, le=60)
    retry_backoff_max_s: float = Field(10.0, gt=0, le=600)
    produce_timeout_s: float = Field(
        15.0, ge=1, le=1200,
        description="one write's wait for the broker (its acknowledgement, or a topic's metadata) before it counts as failed and is retried",
    )
    shutdown_timeout_s: float = Field(30.0, gt=0, le=600)
    topic_wait_timeout_s: float = Field(60.0, gt=0, le=3600, description="how long to wait at start for the input topic")
    lag_report_interval_s: float = Field(5.0, gt=0, le=3600, description="how often the group's consumer lag is measured")
    webhook_url: str | None = Field(None, pattern=r"^https?://[^\s]+$", max_length=2048, description="unset = no webhook sink")
    webhook_token: SecretStr | None = None
    webhook_signing_secret: SecretStr | None = Field(
        None, description="Standard Webhooks secret (whsec_ + base64, at least 24 bytes): every delivery is signed; required with a URL")
    webhook_timeout_s: float = Field(5.0, gt=0, le=120)
    webhook_max_retries: int = Field(3, ge=0, le=20)
    webhook_backoff_initial_s: float = Field(0.5, gt=0, le=60)
    webhook_backoff_max_s: float = Field(30.0, gt=0, le=600)
    webhook_max_age_s: float = Field(900.0, gt=0, le=2_678_400, description="older alerts are not posted (a new group replays the topic)")
    ce_source_prefix: str = Field("/openlfr", pattern=r"^[A-Za-z0-9][A-Za-z0-9+.-]*:[^\s]*$|^/[^\s]*$", max_length=256)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_https(cls, value: str | None) -> str | None:
        from services.pipeline.dispatch.webhook_security import check_webhook_url  # noqa: PLC0415

        if value:
            check_webhook_url(value)
        return value

    @model_validator(mode="after")
    def _webhook_signed(self) -> DispatchSettings:
        if self.webhook_url:
            from services.pipeline.dispatch.webhook_security import check_webhook_secret  # noqa: PLC0415

            if self.webhook_signing_secret is None:
                raise ValueError("LFR_WEBHOOK_SIGNING_SECRET is required with LFR_WEBHOOK_URL: every delivery is signed")
            try:
                check_webhook_secret(self.webhook_signing_secret.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"LFR_WEBHOOK_SIGNING_SECRET: {exc}") from None
        return self

    @model_validator(mode="after")
    def _dispatch_heartbeat_below_session(self) -> DispatchSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("LFR_HEARTBEAT_INTERVAL_MS must be at most a third of LFR_SESSION_TIMEOUT_MS")
        return self


class ReviewSettings(KafkaSettings, SigningSettings, AuditLinkSettings):
    """The review console: officers adjudicate alerts; holds the evidence (probe chips) in custody."""

    group_id: str = Field("lfr-review", pattern=r"^[A-Za-z0-9._-]{1,200}$", description="client id prefix of the console's readers")
    http_host: str = Field("127.0.0.1", min_length=1, max_length=255, description="address the console listens on (loopback by default; the chart sets 0.0.0.0 in the pod)")
    http_port: int = Field(8080, ge=1, le=65535, description="port of the console (HTTP; terminate TLS in front of it)")
    public_url: str = Field("http://127.0.0.1:8080", pattern=r"^https?://[^\s]+$", max_length=2048, description="URL officers open (printed, used for OIDC redirects)")
    users_file: Path = Field(Path("var/review/users.json"), description="local users (argon2id hashes); used when OIDC is not configured")
    state_dir: Path = Field(Path("var/review"), description="evidence custody and transit private keys: a volume only this service mounts")
    session_ttl_s: float = Field(8 * 3600.0, ge=60, le=86_400, description="a session ends this long after sign-in")
    session_idle_s: float = Field(1800.0, ge=30, le=86_400, description="a session ends after this long without a request")
    cookie_secure: bool = Field(True, description="Secure flag on the session cookie (browsers accept it on http://localhost too)")
    login_max_failures: int = Field(5, ge=1, le=100, description="wrong passwords per user within the window before sign-in is locked")
    login_window_s: float = Field(900.0, ge=1, le=86_400, description="window and first lockout length of the login rate limit (each further lockout of the same account or address lasts twice as long, up to a day)")
    login_address_max_failures: int = Field(20, ge=1, le=10_000, description="wrong passwords from one trustworthy client address within the window before that address is locked")
    trusted_proxies: str = Field("", max_length=4096, pattern=r"^[0-9A-Fa-f:.,/ ]*$", description="comma-separated addresses or networks of the TLS-terminating proxies whose X-Forwarded-For is believed (empty: none)")
    evidence_retention_s: float = Field(31 * 86_400.0, ge=1, le=366 * 86_400, description="unadjudicated and confirmed evidence is erased this long after the alert")
    rejected_erasure_s: float = Field(60.0, ge=0, le=300, description="a rejected alert's chip is erased within this bound (at most 5 minutes)")
    transit_key_validity_s: float = Field(60.0, ge=1, le=3600, description="how long one transit public key is used for sealing")
    transit_key_grace_s: float = Field(120.0, ge=1, le=3600, description="a transit private key is destroyed this long after its validity ends")
    sweep_interval_s: float = Field(5.0, gt=0, le=300, description="how often erasure and key destruction run")
    alerts_topic: TopicName = "lfr.alerts.v3"
    evidence_topic: TopicName = "lfr.evidence.v1"
    evidence_keys_topic: TopicName = "lfr.evidence_keys.v1"
    adjudications_topic: TopicName = "lfr.adjudications.v3"
    audit_topic: TopicName = "lfr.audit.v2"
    watchlist_topic: TopicName = "lfr.watchlist.v1"
    counts_topic: TopicName = Field("lfr.counts.v2", description="faces processed (found by detect) per deployment, for the report page")
    deployments_topic: TopicName = Field("lfr.deployments.v1", description="deployment records, for the report page")
    heartbeats_topic: TopicName = Field("lfr.heartbeats.v1", description="van heartbeats, for the fleet page (the force's own vans)")
    dlq_topic: TopicName = Field("lfr.dlq.v1", description="where another force's records are dead-lettered, without payload")
    report_read_timeout_s: float = Field(30.0, gt=0, le=3600, description="how long the report page reads each topic")
    oidc_issuer: str | None = Field(None, pattern=r"^https://[^\s]+$", max_length=2048, description="OpenID Connect issuer; set = sign-in through it instead of the users file")
    oidc_client_id: str | None = Field(None, max_length=256, description="this console's client id at the OpenID Connect provider")
    oidc_client_secret: SecretStr | None = Field(None, description="this console's client secret at the OpenID Connect provider")
    oidc_ca_file: str | None = Field(None, min_length=1, max_length=4096, description="PEM file of the CAs that sign the issuer's TLS certificate (a private PKI); unset = the system's trust store")
    oidc_roles_claim: str = Field("lfr_roles", pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="ID token claim listing the user's roles")
    oidc_deployments_claim: str = Field("lfr_deployments", pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="ID token claim listing an operator's deployments")
    oidc_force_claim: str = Field("lfr_force", pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="ID token claim naming the user's force id (absent: force default); only the console's own force (LFR_FORCE) signs in, and the national role")

    @model_validator(mode="after")
    def _review_bounds(self) -> ReviewSettings:
        if self.transit_key_validity_s + self.transit_key_grace_s > 300:
            raise ValueError("LFR_TRANSIT_KEY_VALIDITY_S + LFR_TRANSIT_KEY_GRACE_S must be at most 300 (the 5-minute erasure promise)")
        from services.operations.review.addresses import parse_proxies  # noqa: PLC0415 - stdlib only

        parse_proxies(self.trusted_proxies)  # ValueError naming the bad entry
        if self.oidc_issuer and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError("LFR_OIDC_CLIENT_ID and LFR_OIDC_CLIENT_SECRET required when LFR_OIDC_ISSUER is set")
        return self


class ReportSettings(KafkaSettings, KeyringSettings):
    """`lfr report`: the topics the transparency report is computed from."""

    alerts_topic: TopicName = "lfr.alerts.v3"
    adjudications_topic: TopicName = "lfr.adjudications.v3"
    counts_topic: TopicName = "lfr.counts.v2"
    watchlist_topic: TopicName = "lfr.watchlist.v1"
    deployments_topic: TopicName = Field("lfr.deployments.v1", description="deployment records (place, window, authorising officer), when present")
    audit_topic: TopicName = Field("lfr.audit.v2", description="the audit trail each watchlist and deployment change's audit record must be found in")
    report_read_timeout_s: float = Field(30.0, gt=0, le=3600, description="how long to read each topic to its end")
