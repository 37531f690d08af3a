"""Wires the matcher: Qdrant index kept by the watchlist materialiser, then the runner."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from services.governance.audit.index import AuditIndex
from services.governance.audit.refusals import signature_checks
from services.common import health
from services.common.errors import SettingsError
from services.common.runner import StageRunner
from services.common.service import EXIT_BAD_SETTINGS, start_service
from services.common.settings import MatcherSettings
from services.governance.deployments.enforcement import record_gate, start_enforcement
from services.governance.deployments.policy import DeploymentPolicy
from services.engine.face.models import SFACE, ModelIdentity
from services.governance.watchlist.index import WatchlistIndex, connect
from services.governance.watchlist.materialiser import WatchlistMaterialiser, now_ms
from services.governance.watchlist.rejects import RejectReporter
from services.governance.watchlist.thresholds import Thresholds

from .stage import MatcherDeps, process

logger = logging.getLogger(__name__)
SERVICE = "matcher"
EXIT_WATCHLIST_STOPPED = 5  # 4 is the runner's EXIT_FATAL
_LOADER_CHECK_INTERVAL_S = 0.5


def build(
    settings: MatcherSettings, clock: Callable[[], int] = now_ms, policy: DeploymentPolicy | None = None
) -> tuple[WatchlistMaterialiser, MatcherDeps]:
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    index = WatchlistIndex(connect(settings.qdrant_url, api_key, settings.qdrant_path, settings.qdrant_embedded), ModelIdentity(SFACE.name, SFACE.sha256),
                           force=settings.force)  # its force's points only (the index's tenant field)
    index.ensure_collection()
    keyring, on_refused = signature_checks(settings, SERVICE)
    reporter = RejectReporter(settings, settings.dlq_topic, SERVICE, audit=on_refused.audit)
    materialiser = WatchlistMaterialiser(
        settings, settings.watchlist_topic, index, sweep_interval_s=settings.expiry_sweep_interval_s, clock=clock,
        reporter=reporter, keyring=keyring, on_refused=on_refused, audit_index=AuditIndex(settings, settings.audit_topic, keyring, wait_s=settings.audit_link_wait_s),
    )
    # The thresholds in force are audited at every start: a changed threshold leaves a record.
    on_refused.audit.write("matcher.thresholds", None, {
        "default": settings.match_threshold_default, "per_category": settings.match_thresholds or "{}"})
    deps = MatcherDeps(
        index=index,
        thresholds=Thresholds.parse(settings.match_threshold_default, settings.match_thresholds),
        top_k=settings.match_top_k,
        output_topic=settings.output_topic,
        latency_budget_ms=settings.latency_budget_ms,
        first_shot_budget_ms=settings.first_shot_budget_ms,
        clock=clock,
        scope=policy.match_scope if policy is not None else None,
        watchlist_current=lambda: materialiser.healthy and materialiser.ready.is_set(),
    )
    return materialiser, deps


def serve(
    settings: MatcherSettings, materialiser: WatchlistMaterialiser, deps: MatcherDeps, admit: Callable | None = None
) -> int:
    """Load the watchlist, then match until stopped; exits EXIT_WATCHLIST_STOPPED if the loader stops."""
    materialiser.start()
    try:
        materialiser.wait_ready(settings.watchlist_load_timeout_s)
        runner = StageRunner(
            SERVICE, settings, lambda batch: process(batch, deps), [settings.input_topic], accepted_schemas={"lfr.embeddings.v1"},
            admit=admit,
        )
        loader_stopped, finished = threading.Event(), threading.Event()

        def watch_loader() -> None:
            # The stage already refuses to match; this hands the process back to its supervisor.
            while not finished.wait(_LOADER_CHECK_INTERVAL_S):
                if not materialiser.healthy:
                    logger.error("watchlist loader stopped; matcher exiting for restart")
                    loader_stopped.set()
                    runner.request_stop()
                    return

        threading.Thread(target=watch_loader, name="watchlist-watch", daemon=True).start()
        try:
            code = runner.run()
        finally:
            finished.set()
        return EXIT_WATCHLIST_STOPPED if loader_stopped.is_set() else code
    finally:
        materialiser.stop()


def main() -> int:
    settings = start_service(SERVICE, MatcherSettings)
    if settings is None:
        return EXIT_BAD_SETTINGS
    try:
        view, policy = start_enforcement(settings, SERVICE)
        materialiser, deps = build(settings, policy=policy)
    except SettingsError as exc:  # no keyring or signing key: refuse to start rather than trust anything
        print(f"lfr {SERVICE}: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    except (TimeoutError, RuntimeError) as exc:  # e.g. the topic is missing: say so, exit 1
        logger.error("cannot start: deployments not loaded", extra={"error": str(exc.__cause__ or exc)})
        return 1
    health.add_check(
        "watchlist",
        lambda: (materialiser.healthy and materialiser.ready.is_set(),
                 "loaded" if materialiser.ready.is_set() else ("loader stopped" if not materialiser.healthy else "loading")),
    )
    try:
        return serve(settings, materialiser, deps, admit=record_gate(policy, SERVICE))
    finally:
        view.stop()
