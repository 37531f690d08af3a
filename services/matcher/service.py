"""Wires the matcher: Qdrant index kept by the watchlist materialiser, then the runner."""

from __future__ import annotations

import logging
from collections.abc import Callable

from services.common import health
from services.common.runner import StageRunner
from services.common.service import EXIT_BAD_SETTINGS, start_service
from services.common.settings import MatcherSettings
from services.deployments.enforcement import record_gate, start_enforcement
from services.deployments.policy import DeploymentPolicy
from services.face.models import SFACE, ModelIdentity
from services.watchlist.index import WatchlistIndex, connect
from services.watchlist.materialiser import WatchlistMaterialiser, now_ms
from services.watchlist.thresholds import Thresholds

from .stage import MatcherDeps, process

logger = logging.getLogger(__name__)
SERVICE = "matcher"


def build(
    settings: MatcherSettings, clock: Callable[[], int] = now_ms, policy: DeploymentPolicy | None = None
) -> tuple[WatchlistMaterialiser, MatcherDeps]:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    index = WatchlistIndex(connect(settings.qdrant_url, api_key, settings.qdrant_path, settings.qdrant_embedded), ModelIdentity(SFACE.name, SFACE.sha256))
    index.ensure_collection()
    materialiser = WatchlistMaterialiser(
        settings, settings.watchlist_topic, index, sweep_interval_s=settings.expiry_sweep_interval_s, clock=clock
    )
    deps = MatcherDeps(
        index=index,
        thresholds=Thresholds.parse(settings.match_threshold_default, settings.match_thresholds),
        top_k=settings.match_top_k,
        output_topic=settings.output_topic,
        latency_budget_ms=settings.latency_budget_ms,
        counts_topic=settings.counts_topic,
        clock=clock,
        scope=policy.match_scope if policy is not None else None,
    )
    return materialiser, deps


def main() -> int:
    settings = start_service(SERVICE, MatcherSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    try:
        view, policy = start_enforcement(settings, SERVICE)
    except (TimeoutError, RuntimeError) as exc:  # e.g. the topic is missing: say so, exit 1
        logger.error("cannot start: deployments not loaded", extra={"error": str(exc.__cause__ or exc)})
        return 1
    materialiser, deps = build(settings, policy=policy)
    health.add_check("watchlist", lambda: (materialiser.ready.is_set(), "loaded" if materialiser.ready.is_set() else "loading"))
    materialiser.start()
    try:
        materialiser.wait_ready(settings.watchlist_load_timeout_s)
        runner = StageRunner(
            SERVICE, settings, lambda batch: process(batch, deps), [settings.input_topic], accepted_schemas={"lfr.embeddings.v1"},
            admit=record_gate(policy, SERVICE),
        )
        return runner.run()
    finally:
        materialiser.stop()
        view.stop()
