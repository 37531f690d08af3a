"""Who is enrolled and which images probe, decided only by the folder and the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

MAX_PROBES_PER_IDENTITY = 10
#: LFW labels one person under two names; found by `lfr eval` (a "non-mated" Sepp Blatter probe
#: scoring 0.74 against the enrolled Joseph Blatter). Such a probe is mated, not non-mated, so
#: an identity is never a non-mated probe while its alias is enrolled.
ALIASES = (("Joseph_Blatter", "Sepp_Blatter"),)


@dataclass(frozen=True)
class EvalPlan:
    enrolled: list[tuple[str, list[Path]]]  # (identity, enrolment images)
    mated: list[tuple[str, Path]]  # (identity, probe image) of enrolled identities
    nonmated: list[Path]


def plan(identities: dict[str, list[Path]], seed: int, enrol_images: int = 1) -> EvalPlan:
    """Identities with 2+ images, sorted then shuffled with the seed; the first half are enrolled
    with their first image (their first ``enrol_images``, always leaving one to probe with) and
    probed with up to 10 of the rest; non-mated probes are every image of single-image
    identities and the first 10 images of each identity in the second half."""
    multi = sorted(name for name, images in identities.items() if len(images) >= 2)
    random.Random(seed).shuffle(multi)
    half = len(multi) // 2
    enrolled_names, others = multi[:half], multi[half:]
    count = {name: max(1, min(enrol_images, len(identities[name]) - 1)) for name in enrolled_names}
    enrolled = [(name, identities[name][: count[name]]) for name in enrolled_names]
    mated = [(name, path) for name in enrolled_names for path in identities[name][count[name] : count[name] + MAX_PROBES_PER_IDENTITY]]
    aliased = {b for a, b in ALIASES if a in enrolled_names} | {a for a, b in ALIASES if b in enrolled_names}
    singles = sorted(name for name, images in identities.items() if len(images) == 1 and name not in aliased)
    nonmated = [identities[name][0] for name in singles]
    nonmated += [path for name in others if name not in aliased for path in identities[name][:MAX_PROBES_PER_IDENTITY]]
    return EvalPlan(enrolled, mated, nonmated)
