"""Per-camera face tracking and shot selection (pure: no Kafka, no models); detect calls it."""

from .shots import SHOT_REASONS, SKIP_REASONS, ShotDecision, ShotPolicy, shot_quality
from .tracker import CameraTracker, TrackerConfig, Tracks

__all__ = ["SHOT_REASONS", "SKIP_REASONS", "CameraTracker", "ShotDecision", "ShotPolicy", "TrackerConfig", "Tracks", "shot_quality"]
