"""Wires the detect stage to Kafka."""

from __future__ import annotations

from services.common.service import run_service
from services.common.settings import DetectSettings
from services.engine.face import FaceDetector, ImageLimits, QualityBounds
from services.engine.tracking import ShotPolicy, TrackerConfig, Tracks

from .stage import DetectDeps, DetectStage
from .views import CameraViews

SERVICE = "detect"
MODEL_BATCH = 8


def build(settings: DetectSettings):
    deps = DetectDeps(
        detector=FaceDetector(
            score_threshold=settings.detector_score_threshold,
            # A consumed batch may hold a backlog (batch_max_messages) so that skip-superseded
            # can keep each camera's newest frame; the model runs at most MODEL_BATCH of them at
            # once (a YuNet input is 640x640x3 floats, 4.9 MB per frame).
            max_batch=min(settings.batch_max_messages, MODEL_BATCH),
            intra_op_threads=settings.intra_op_threads,
            cache_dir=settings.model_cache_dir,
        ),
        bounds=QualityBounds(
            min_face_width=settings.min_face_width_px,
            min_inter_ocular=settings.min_interocular_px,
            min_score=settings.min_detector_score,
            max_abs_roll=settings.max_abs_roll_deg,
            max_abs_yaw=settings.max_abs_yaw,
            min_blur=settings.min_blur,
        ),
        limits=ImageLimits(max_pixels=settings.max_frame_pixels),
        output_topic=settings.output_topic,
        counts_topic=settings.counts_topic,
        max_frame_age_ms=settings.max_frame_age_ms,
        superseded_after_ms=settings.superseded_after_ms,
        views=CameraViews.from_settings(settings.tile_cameras, settings.tile_columns, settings.tile_overlap, settings.detect_regions),
        tracks=Tracks(TrackerConfig(ttl_ms=int(settings.track_ttl_s * 1000))) if settings.tracking_enabled else None,
        shots=ShotPolicy(max_shots=settings.track_max_shots, margin=settings.track_shot_margin, refresh_ms=int(settings.track_refresh_s * 1000)),
    )
    return DetectStage(deps), [settings.input_topic]


def main() -> int:
    return run_service(SERVICE, DetectSettings, build, accepted_schemas={"lfr.frames.v1"})
