"""Hypothesis profiles: a small, deterministic one for make test / CI, a longer one on request."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("LFR_HYPOTHESIS_PROFILE", "ci"))
