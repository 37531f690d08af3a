"""Who is enrolled and which images probe, decided only by the folder and the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

MAX_PROBES_PER_IDENTITY = 10


@dataclass(frozen=True)
class EvalPlan:
    enrolled: list[tuple[str, Path]]  # (identity, enrolment image)
    mated: list[tuple[str, Path]]  # (identity, probe image) of enrolled identities
    nonmated: list[Path]


def plan(identities: dict[str, list[Path]], seed: int) -> EvalPlan:
    """Identities with 2+ images, sorted then shuffled with the seed; the first half are enrolled
    with their first image and probed with up to 10 others; non-mated probes are every image of
    single-image identities and the first 10 images of each identity in the second half."""
    multi = sorted(name for name, images in identities.items() if len(images) >= 2)
    random.Random(seed).shuffle(multi)
    half = len(multi) // 2
    enrolled_names, others = multi[:half], multi[half:]
    enrolled = [(name, identities[name][0]) for name in enrolled_names]
    mated = [(name, path) for name in enrolled_names for path in identities[name][1 : 1 + MAX_PROBES_PER_IDENTITY]]
    singles = sorted(name for name, images in identities.items() if len(images) == 1)
    nonmated = [identities[name][0] for name in singles]
    nonmated += [path for name in others for path in identities[name][:MAX_PROBES_PER_IDENTITY]]
    return EvalPlan(enrolled, mated, nonmated)
