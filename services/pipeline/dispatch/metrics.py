"""Dispatch metrics. Shared counters (consumed, produced, dead-lettered) come from
services.common.metrics so their names and labels match every other service. Labels are
bounded: never a subject, person, camera or alert id."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ALERTS = Counter("lfr_alerts_total", "Alerts emitted, by watchlist priority and kind (new|update)", ["priority", "kind"])
CAPTURE_TO_ALERT = Histogram(
    "lfr_capture_to_alert_seconds",
    "Alert emit time minus the frame's capture time",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30),
)
WEBHOOK_DELIVERIES = Counter(
    "lfr_webhook_deliveries_total",
    "Webhook attempts by outcome: delivered, retried (a failed attempt that is retried), "
    "failed (dead-lettered after the last retry or a refusal), expired (too old to post)",
    ["outcome"],
)
