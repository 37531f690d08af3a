"""Wires the matcher: Qdrant index kept by the watchlist materialiser, then the runner."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from services.common.errors import SettingsError
from services.common.logs import configure_logging
from services.common.metrics import start_metrics_server
from services.common.runner import StageRunner
from services.common.settings import MatcherSettings, load_settings
from services.face.models import SFACE, ModelIdentity
from services.watchlist.index import WatchlistIndex, connect
from services.watchlist.materialiser import WatchlistMaterialiser, now_ms
from services.watchlist.thresholds import Thresholds

from .stage import MatcherDeps, process

logger = logging.getLogger(__name__)
SERVICE = "matcher"


def build(settings: MatcherSettings, clock: Callable[[], int] = now_ms) -> tuple[WatchlistMaterialiser, MatcherDeps]:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    index = WatchlistIndex(connect(settings.qdrant_url, api_key, settings.qdrant_path), ModelIdentity(SFACE.name, SFACE.sha256))
    index.ensure_collection()
    materialiser = WatchlistMaterialiser(
        settings, settings.watchlist_topic, index, sweep_interval_s=settings.expiry_sweep_interval_s, clock=clock
    )
    deps = MatcherDeps(
        index=index,
        thresholds=Thresholds.parse(settings.match_threshold_default, settings.match_thresholds),
        top_k=settings.match_top_k,
        output_topic=settings.output_topic,
        clock=clock,
    )
    return materialiser, deps


def main() -> int:
    try:
        settings = load_settings(MatcherSettings)
    except SettingsError as exc:
        print(f"lfr {SERVICE}: {exc}", file=sys.stderr)
        return 2
    configure_logging(SERVICE, settings.log_level)
    start_metrics_server(settings.metrics_port)
    materialiser, deps = build(settings)
    materialiser.start()
    try:
        materialiser.wait_ready(settings.watchlist_load_timeout_s)
        runner = StageRunner(
            SERVICE, settings, lambda batch: process(batch, deps), [settings.input_topic], accepted_schemas={"lfr.embeddings.v1"}
        )
        return runner.run()
    finally:
        materialiser.stop()
