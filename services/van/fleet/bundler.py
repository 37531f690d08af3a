"""Bundles on authorisation: the core builds one sealed bundle per van a deployment names.

`lfr bundle build-due` (once, or every ``--every`` seconds as the core's runner) reads the
verified deployments (services/governance/deployments/verified.py, through DeploymentStore.read_all: a
record refused for its signature, audit link or countersignature builds nothing) and, for each
authorised or active deployment whose window is not over and which names vans, writes each van's
bundle (services/van/fleet/bundle.py: signed by the force, sealed to the van's public key) into
LFR_BUNDLE_STORE_DIR as ``<deployment>.<authorised at ms>.<van>.lfrb``. Only ciphertext is
written; the plaintext exists in memory only. One bundle per van per authorisation: a file
already there is not built again (a restart rebuilds nothing), a new authorisation gets new
bundles. Delivery to the van (its own download, or a USB stick in the depot) is outside this.

Skipped, never silently (policy ``skip_and_count``, ``lfr_bundles_skipped_total{reason}``, a
warning): a van with no public key in LFR_BUNDLE_VAN_KEYS_DIR (``<van>.pub.json`` from `lfr van
keygen`) is ``no_van_key``; a snapshot entry no longer in the watchlist is ``entries_missing``;
a build the bundle module refuses (another force's deployment, for instance) is ``refused``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter

from services.common.signing import Signer, TrustedKey
from services.governance.deployments.record import Deployment
from services.governance.watchlist.entry import WatchlistEntry
from services.governance.watchlist.thresholds import Thresholds

from .bundle import BUNDLE_STATES, BundleContents, BundleError, build_bundle
from .vankey import VanPublicKey

logger = logging.getLogger(__name__)

BUILT = Counter("lfr_bundles_built_total", "Deployment bundles the core built at authorisation, one per named van")
SKIPPED = Counter("lfr_bundles_skipped_total", "Named vans given no bundle (policy skip_and_count: no_van_key, entries_missing, refused)", ["reason"])
SKIP_REASONS = ("no_van_key", "entries_missing", "refused")


@dataclass(frozen=True)
class Built:
    deployment_id: str
    van_id: str
    path: Path
    bytes: int


def bundle_name(deployment: Deployment, van_id: str) -> str:
    at_ms = deployment.authorisation.at_ms if deployment.authorisation else 0
    return f"{deployment.deployment_id}.{at_ms}.{van_id}.lfrb"


def wanted(deployments: Iterable[Deployment], now_ms: int) -> list[tuple[Deployment, str]]:
    """(deployment, van) pairs that should have a bundle now."""
    return [(d, van) for d in deployments
            if d.vans and d.state in BUNDLE_STATES and d.authorisation is not None and d.window is not None and now_ms < d.window.end_ms
            for van in d.vans]


def build_due(deployments: Mapping[str, Deployment], entries: Mapping[str, WatchlistEntry], *, force: str, signer: Signer,
              keyring: tuple[TrustedKey, ...], thresholds: Thresholds, grace_ms: int, van_keys_dir: Path, store_dir: Path,
              now_ms: int) -> list[Built]:
    """Write every missing bundle; the ones written now."""
    from services.governance.deployments.snapshot import entry_version  # noqa: PLC0415 - the one definition of a version

    store_dir.mkdir(parents=True, exist_ok=True)
    made: list[Built] = []
    for deployment, van_id in wanted(deployments.values(), now_ms):
        path = store_dir / bundle_name(deployment, van_id)
        if path.exists():
            continue
        key_file = van_keys_dir / f"{van_id}.pub.json"
        if not key_file.is_file():
            _skip("no_van_key", deployment, van_id)
            continue
        versions = deployment.snapshot.entry_versions if deployment.snapshot else frozenset()
        chosen = tuple(e for e in entries.values() if entry_version(e) in versions)
        if len(chosen) != len(versions):
            _skip("entries_missing", deployment, van_id)
            continue
        try:
            raw = build_bundle(BundleContents(deployment, chosen, thresholds, keyring), VanPublicKey.load(key_file), force, signer,
                               grace_ms=grace_ms, now_ms=now_ms)
        except BundleError as exc:
            _skip("refused", deployment, van_id, str(exc))
            continue
        partial = path.with_suffix(".part")
        partial.write_bytes(raw)
        os.chmod(partial, 0o600)
        partial.replace(path)  # whole or absent: a crash mid-write leaves only a .part, rebuilt next pass
        BUILT.inc()
        logger.info("bundle built", extra={"deployment": deployment.deployment_id, "van": van_id, "bytes": len(raw)})
        made.append(Built(deployment.deployment_id, van_id, path, len(raw)))
    return made


def _skip(reason: str, deployment: Deployment, van_id: str, detail: str = "") -> None:
    SKIPPED.labels(reason).inc()
    logger.warning("no bundle built for van %s of deployment %s: %s %s", van_id, deployment.deployment_id, reason, detail[:200],
                   extra={"reason": reason, "deployment": deployment.deployment_id, "van": van_id})
