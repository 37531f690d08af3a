"""Who is on the watchlist and who walks past, chosen from the data set by a seed."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.engine.face import LIVE_BOUNDS, FaceDetector, FaceEmbedder, align_face, assess_quality, decode_image
from services.engine.face.evaluate import list_identities, nearest_to_centre
from services.governance.watchlist.enrol import EnrolmentRefused, EnrolmentRequest, Enroller
from services.governance.watchlist.thresholds import DEFAULT_THRESHOLD

YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True)
class Cast:
    watchlist: list[tuple[str, Path]]  # (identity, enrolment photo)
    walkers: list[str]  # identities that walk past (watchlisted ones with another photo)
    strangers: list[str]
    walker_photo_index: int = 1


def enrolment_request(identity: str, photo: Path, deployment: str) -> EnrolmentRequest:
    now = int(time.time() * 1000)
    return EnrolmentRequest(
        subject_id=identity, reference="DEMO-" + identity[:40], category="suspect", priority="red",
        image_source="demo data set", image_captured_at_ms=now - YEAR_MS, legal_basis="demonstration only",
        added_by="lfr demo", expires_at_ms=now + YEAR_MS, deployments=(deployment,), images=[photo.read_bytes()],
        image_names=[photo.name],
    )


def _probe(detector: FaceDetector, embedder: FaceEmbedder, path: Path) -> np.ndarray | None:
    image = decode_image(path.read_bytes())
    face = nearest_to_centre(detector.detect(image), image.shape)
    if face is None:
        return None
    chip = align_face(image, face.landmarks)
    return embedder.embed(chip[None])[0] if assess_quality(face, chip, LIVE_BOUNDS).accepted else None


def choose_cast(
    data_dir: Path,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    *,
    watchlisted: int,
    strangers: int,
    seed: int,
    deployment: str,
    recognisable_margin: float | None = None,
) -> Cast:
    """Watchlist subjects whose first photo passes enrolment; strangers from single-photo identities.

    With ``recognisable_margin`` (tests), keep only subjects whose walking photo scores at least
    the default threshold + margin against their enrolment photo, and strangers that score below
    threshold - margin against all of them: the test then checks the pipeline, not the model.
    """
    identities = list_identities(data_dir)
    rng = random.Random(seed)
    multi = sorted(n for n, imgs in identities.items() if len(imgs) >= 2)
    singles = sorted(n for n, imgs in identities.items() if len(imgs) == 1)
    rng.shuffle(multi)
    rng.shuffle(singles)
    enroller = Enroller(detector, embedder)
    chosen: list[tuple[str, Path]] = []
    vectors: list[np.ndarray] = []
    for name in multi:
        if len(chosen) == watchlisted:
            break
        try:
            entry = enroller.build(enrolment_request(name, identities[name][0], deployment), int(time.time() * 1000))
        except EnrolmentRefused:
            continue
        if recognisable_margin is not None:
            walking = _probe(detector, embedder, identities[name][1])
            if walking is None or float(walking @ entry.embeddings[0].vector) < DEFAULT_THRESHOLD + recognisable_margin:
                continue
        chosen.append((name, identities[name][0]))
        vectors.append(entry.embeddings[0].vector)
    passers: list[str] = []
    for name in singles:
        if len(passers) == strangers:
            break
        if recognisable_margin is not None:
            probe = _probe(detector, embedder, identities[name][0])
            if probe is None or float(np.max(np.stack(vectors) @ probe)) > DEFAULT_THRESHOLD - recognisable_margin:
                continue
        passers.append(name)
    return Cast(watchlist=chosen, walkers=[n for n, _ in chosen], strangers=passers)
