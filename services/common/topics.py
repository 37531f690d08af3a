"""Topic definitions from one config file, applied idempotently with the Kafka admin API."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

logger = logging.getLogger(__name__)

SHOWN_CONFIGS = ("cleanup.policy", "retention.ms", "segment.ms")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    biometric: bool
    config: dict[str, str] = field(default_factory=dict)
    promise_ms: int | None = None  # biometric data unreadable this long after append (privacy/retention.py)
    platform: bool = False  # one for the whole platform (the force registry), never per force (services/governance/forces/naming.py)
    governed: bool = False  # its records steer the platform (who is sought, where, by whose key): docs/assurance/security.md says who writes and who verifies it


def default_config_path() -> Path:
    return Path(str(resources.files("services.common").joinpath("topics.toml")))


def load_topic_specs(path: Path | None = None, replication_factor: int | None = None) -> list[TopicSpec]:
    document = tomllib.loads((path or default_config_path()).read_text(encoding="utf-8"))
    default_rf = replication_factor or int(document.get("defaults", {}).get("replication_factor", 1))
    from services.governance.forces.naming import check_topic_name  # noqa: PLC0415 - the one naming scheme

    specs = []
    for name, entry in document["topics"].items():
        check_topic_name(name, platform=document["topics"].keys())  # a name outside the scheme is refused
        partitions = int(entry["partitions"])
        if partitions < 1:
            raise ValueError(f"topic {name}: partitions must be >= 1")
        specs.append(
            TopicSpec(
                name=name,
                partitions=partitions,
                replication_factor=int(entry.get("replication_factor", default_rf)),
                biometric=bool(entry.get("biometric", False)),
                config={key: str(value) for key, value in entry.get("config", {}).items()},
                promise_ms=int(entry["promise_ms"]) if "promise_ms" in entry else None,
                platform=entry.get("scope", "force") == "platform",
                governed=bool(entry.get("governed", False)),
            )
        )
    return specs


@dataclass(frozen=True)
class ApplyResult:
    name: str
    action: str  # created | updated | unchanged
    detail: str = ""


def apply_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> list[ApplyResult]:
    """Create missing topics, bring configs and partition counts of existing ones up to the spec."""
    existing = admin.list_topics(timeout=timeout_s).topics
    results: list[ApplyResult] = []
    missing = [spec for spec in specs if spec.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in missing],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
                results.append(ApplyResult(name, "created"))
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # created concurrently: fine
                    raise
                results.append(ApplyResult(name, "unchanged", "created concurrently"))
    for spec in specs:
        if spec.name in existing:
            results.append(_update(admin, spec, len(existing[spec.name].partitions), timeout_s))
    order = {spec.name: i for i, spec in enumerate(specs)}
    return sorted(results, key=lambda result: order[result.name])


def _update(admin: AdminClient, spec: TopicSpec, partitions: int, timeout_s: float) -> ApplyResult:
    changes = []
    current = describe_configs(admin, [spec.name], timeout_s)[spec.name]
    drift = {key: value for key, value in spec.config.items() if current.get(key) != value}
    if drift:
        resource = ConfigResource(
            "topic",
            spec.name,
            incremental_configs=[ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()],
        )
        for future in admin.incremental_alter_configs([resource]).values():
            future.result()
        changes.append("set " + ", ".join(f"{k}={v}" for k, v in sorted(drift.items())))
    if partitions < spec.partitions:
        try:
            for future in admin.create_partitions([NewPartitions(spec.name, spec.partitions)]).values():
                future.result()
            changes.append(f"partitions {partitions} -> {spec.partitions}")
        except KafkaException as exc:
            raise RuntimeError(
                f"topic {spec.name} has {partitions} partitions, config wants {spec.partitions}, and the broker "
                f"refused to add partitions: {exc.args[0].str()}"
            ) from None
    elif partitions > spec.partitions:
        logger.warning("topic has more partitions than configured; Kafka cannot shrink", extra={"topic": spec.name})
    return ApplyResult(spec.name, "updated" if changes else "unchanged", "; ".join(changes))


def describe_configs(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> dict[str, dict[str, str]]:
    futures = admin.describe_configs([ConfigResource("topic", name) for name in names], request_timeout=timeout_s)
    return {resource.name: {k: v.value for k, v in future.result().items()} for resource, future in futures.items()}


@dataclass(frozen=True)
class TopicDescription:
    name: str
    partitions: int | None
    config: dict[str, str]


def describe_topics(admin: AdminClient, specs: list[TopicSpec], timeout_s: float = 30.0) -> list[TopicDescription]:
    topics = admin.list_topics(timeout=timeout_s).topics
    present = [spec.name for spec in specs if spec.name in topics]
    configs = describe_configs(admin, present, timeout_s) if present else {}
    return [
        TopicDescription(spec.name, len(topics[spec.name].partitions) if spec.name in topics else None, configs.get(spec.name, {}))
        for spec in specs
    ]


def format_retention(value: str | None) -> str:
    if value is None:
        return "-"
    ms = int(value)
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
