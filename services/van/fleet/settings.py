"""Settings of the fleet commands: the van's identity and state, and the core's bundle builder."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from services.common.settings import DeploymentSettings, KafkaSettings, KeyringSettings

#: a force id as a topic prefix uses it (services/governance/forces/naming.py of issue #24 checks the registry)
FORCE_PATTERN = r"^[a-z](?:-?[a-z0-9]){1,31}$"


class VanSettings(KeyringSettings):
    """A van: who it is, which force it serves, where it keeps its state. LFR_KEYRING_FILE holds
    the public keys it trusts to sign bundles (owners ``force:<id>``), revocations included."""

    van_id: str = Field("van-1", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="this van's id (its key file names it too)")
    force: str = Field("default", pattern=FORCE_PATTERN, description="the force this van serves now (a bundle of another force is refused)")
    van_state_dir: Path = Field(Path("var/van"), description="bundles (ciphertext), the ledger and the outbox of this van")
    van_key_file: Path | None = Field(None, description="this van's private X25519 key from `lfr van keygen` (encrypted)")
    van_key_passphrase: SecretStr | None = Field(None, description="passphrase of the van key")
    audit_topic: str = Field("lfr.audit.v2", pattern=r"^[A-Za-z0-9._-]{1,249}$", description="where erasure audit records go (via the link)")


class BundleBuildSettings(DeploymentSettings):
    """The core's bundle builder: reads deployments and the watchlist, signs as the force."""

    force: str = Field("default", pattern=FORCE_PATTERN, description="the force building bundles; its signing key's owner is force:<id>")
    bundle_grace_s: int = Field(3600, ge=0, le=7 * 86_400,
                                description="a van erases a bundle this long after the deployment's window ends, even with no link")
    bundle_van_keys_dir: Path = Field(Path("var/core/van-keys"), description="the fleet's van public keys (<van id>.pub.json from `lfr van keygen`) for `lfr bundle build-due`")
    bundle_store_dir: Path = Field(Path("var/core/bundles"), description="where `lfr bundle build-due` writes each named van's bundle (ciphertext only)")


class HeartbeatSettings(VanSettings, KafkaSettings):
    """`lfr van heartbeat`: LFR_KAFKA_BOOTSTRAP_SERVERS is the van's broker (the link forwards)."""

    heartbeat_topic: str = Field("lfr.heartbeats.v1", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    build_id: str = Field("", max_length=128, description="the build the image was made from (e.g. its git commit), reported in heartbeats")
    heartbeat_interval_s: float = Field(15.0, ge=1, le=3600, description="seconds between heartbeats")
    link_outbox_path: Path = Field(Path("var/van/outbox.sqlite"), description="the link's outbox, read for the backlog")
    link_down_after_s: float = Field(10.0, gt=0, le=3600, description="link reported down when rows wait this long without an acknowledgement")


class IntakeSettings(KafkaSettings):
    """`lfr run intake` at the core: LFR_KAFKA_BOOTSTRAP_SERVERS is the core's broker; the links
    of the force's vans write to LFR_INTAKE_TOPIC, the intake checks each record and writes it on."""

    intake_topic: str = Field("lfr-link-inbound", pattern=r"^[A-Za-z0-9._-]{1,249}$",
                              description="the landing topic the vans' links write to (the core's own topics only get checked records)")
    intake_vans_file: Path | None = Field(None, description="the core's fleet register: JSON {\"vans\": [{\"van_id\", \"force\"}]}; unset = every van refused")
    intake_group_id: str = Field("lfr-intake", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    dlq_topic: str = Field("lfr.dlq.v1", pattern=r"^[A-Za-z0-9._-]{1,249}$", description="where refused forwarded records go (metadata only)")
    intake_seen_ids: int = Field(1_000_000, ge=1000, le=100_000_000, description="forwarded ids remembered to drop a record the link sent twice")
    intake_dedup_window_s: float = Field(7 * 86_400, ge=60, le=90 * 86_400,
                                         description="at start, ids of records the intake wrote within this long are read back from the core's output topics (policy forget_oldest: a copy re-sent later passes again)")
    intake_rebuild_records: int = Field(200_000, ge=100, le=10_000_000,
                                        description="at start, at most this many of the latest records per partition of each output topic are read back for their ids")
    intake_batch_max: int = Field(500, ge=1, le=10_000)
    intake_poll_timeout_ms: int = Field(200, ge=1, le=10_000)
    session_timeout_ms: int = Field(45_000, ge=3_000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=60_000)


class VanRunSettings(HeartbeatSettings):
    """`lfr van run`: a van on embedded defaults. The van's own services read the same LFR_*
    variables (LFR_LINK_* for the link); these are the runner's own."""

    link_core_bootstrap_servers: str = Field(min_length=3, max_length=2048,
                                             description="the force's core the link connects out to (unreachable = a van offline: outcomes wait in the outbox)")
    van_erase_check_s: float = Field(60.0, ge=1, le=3600, description="seconds between checks for bundles due for crypto-erasure (no link needed)")
    van_ready_timeout_s: float = Field(300.0, ge=10, le=3600, description="longest the van's services may take to start")
    van_min_free_mb: int = Field(512, ge=0, le=10**7, description="below this much free space on the state disk the van stops capturing (policy stop_capture: outcomes already queued are never dropped); it resumes at twice this")
