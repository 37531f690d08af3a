"""Prometheus metrics of the review console. Labels are bounded; never a person, alert or user."""

from prometheus_client import Counter, Gauge, Histogram

LOGINS = Counter("lfr_review_logins_total", "Sign-in attempts", ["result"])  # ok | wrong | locked | local_disabled | oidc_ok | oidc_refused | oidc_unavailable
REFUSALS = Counter("lfr_review_refusals_total", "Requests refused", ["reason"])  # no_session | forbidden | csrf | invalid
ADJUDICATIONS = Counter("lfr_review_adjudications_total", "Adjudication records written", ["stage", "value"])
ALERT_TO_DECISION = Histogram("lfr_review_alert_to_decision_seconds", "From the alert being raised to the officer's decision",
                              buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600))
ALERTS_SEEN = Counter("lfr_review_alerts_total", "Alert revisions read from the alerts topic")
EVIDENCE_HELD = Counter("lfr_review_evidence_taken_total", "Probe chips opened and taken into custody")
EVIDENCE_UNREADABLE = Counter("lfr_review_evidence_unreadable_total",
                              "Sealed chips that could not be opened (transit key already destroyed: drop policy transit-key-expired)")
EVIDENCE_ERASED = Counter("lfr_review_evidence_erased_total", "Probe chips erased from custody", ["reason"])  # rejected | retention
TRANSIT_KEYS = Counter("lfr_review_transit_keys_total", "Transit keys", ["event"])  # created | destroyed
LIVE_STREAMS = Gauge("lfr_review_live_streams", "Open live-queue streams")
SESSIONS = Gauge("lfr_review_sessions", "Open sessions")
