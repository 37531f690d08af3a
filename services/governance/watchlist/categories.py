"""Watchlist categories and priorities: plain names, importable without the face engine (the
command line builds its argument choices from them on every start)."""

# College of Policing LFR watchlist categories (schemas/lfr.common.v1.json#/$defs/category).
CATEGORIES = (
    "wanted_by_courts",
    "suspect",
    "bail_conditions",
    "missing_person_at_risk",
    "risk_to_self_or_others",
    "associate",
    "witness_or_victim",
)
PRIORITIES = ("red", "amber", "green")
