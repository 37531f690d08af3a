"""Settings of the fleet commands: the van's identity and state, and the core's bundle builder."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from services.common.settings import DeploymentSettings, KafkaSettings, KeyringSettings

#: a force id as a topic prefix uses it (services/forces/naming.py of issue #24 checks the registry)
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


class HeartbeatSettings(VanSettings, KafkaSettings):
    """`lfr van heartbeat`: LFR_KAFKA_BOOTSTRAP_SERVERS is the van's broker (the link forwards)."""

    heartbeat_topic: str = Field("lfr.heartbeats.v1", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    build_id: str = Field("", max_length=128, description="the build the image was made from (e.g. its git commit), reported in heartbeats")
    heartbeat_interval_s: float = Field(15.0, ge=1, le=3600, description="seconds between heartbeats")
    link_outbox_path: Path = Field(Path("var/van/outbox.sqlite"), description="the link's outbox, read for the backlog")
    link_down_after_s: float = Field(10.0, gt=0, le=3600, description="link reported down when rows wait this long without an acknowledgement")
