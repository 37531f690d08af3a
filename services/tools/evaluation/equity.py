"""Equitability: false positive identification rate per demographic group, the way the NPL
tested police LFR (non-mated probes labelled by group, a balanced filler watchlist, each rate
with a 95 % Wilson interval, a difference called significant only when two groups' intervals
do not overlap).

Labels come from UTKFace file names, ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` (the data set's
own estimates, approximate). Group names are stable keys of the `lfr eval` JSON.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "other"}
GENDERS = {0: "male", 1: "female"}
ADULT_AGE = 18
Z95 = 1.959964
#: Fixed thresholds reported for every group: the NPL's range 0.40-0.65, continued to 0.90
#: because on tightly cropped faces no group difference disappears within it.
EQUITY_THRESHOLDS = tuple(round(0.40 + 0.01 * i, 2) for i in range(51))


def labels_from_name(path: Path) -> tuple[str, ...] | None:
    """('race:black', 'gender:female', 'age:under18'), or None for a name that does not parse."""
    parts = path.name.split("_")
    try:
        age, gender, race = int(parts[0]), int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None
    if gender not in GENDERS or race not in RACES or age < 0:
        return None
    return (f"race:{RACES[race]}", f"gender:{GENDERS[gender]}", "age:under18" if age < ADULT_AGE else "age:adult")


#: Two files this similar are the same photograph (UTKFace holds some twice, under different
#: age labels); each is kept once, or a "false" match would be a photo matching itself.
DUPLICATE_SIMILARITY = 0.95


def without_duplicates(paths: list[Path], vectors: list[np.ndarray | None]) -> tuple[list[Path], int]:
    """``paths`` minus every later copy of a photo (cosine >= DUPLICATE_SIMILARITY to a kept one)."""
    kept: list[Path] = []
    kept_vectors: list[np.ndarray] = []
    dropped = 0
    for path, vector in zip(paths, vectors, strict=True):
        if vector is not None and kept_vectors and float(np.max(np.stack(kept_vectors) @ vector)) >= DUPLICATE_SIMILARITY:
            dropped += 1
            continue
        kept.append(path)
        if vector is not None:
            kept_vectors.append(vector)
    return kept, dropped


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def balanced_split(paths: list[Path], seed: int) -> tuple[list[Path], list[Path]]:
    """Halves with the same mix of race x gender x age: within each stratum, shuffled with the
    seed, alternate images go to the filler watchlist and to the probes."""
    strata: dict[tuple[str, ...], list[Path]] = defaultdict(list)
    for path in sorted(paths):
        strata[labels_from_name(path) or ("unlabelled",)].append(path)
    rng = random.Random(seed)
    fillers, probes = [], []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        fillers += members[0::2]
        probes += members[1::2]
    return sorted(fillers), sorted(probes)


def group_rates(scores: np.ndarray, labels: list[tuple[str, ...]], threshold: float) -> dict[str, dict]:
    """Per group: n searches, false alarms (best candidate >= threshold), FPIR and its interval."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for score, groups in zip(scores, labels, strict=True):
        for group in groups:
            counts[group][0] += 1
            counts[group][1] += int(score >= threshold)
    out = {}
    for group in sorted(counts):
        n, k = counts[group]
        low, high = wilson(k, n)
        out[group] = {"n": n, "false_alarms": k, "fpir": round(k / n, 6) if n else 0.0, "ci_low": round(low, 6), "ci_high": round(high, 6)}
    return out


def significant_pairs(groups: dict[str, dict]) -> list[list[str]]:
    """Pairs of groups of the same attribute whose 95 % intervals do not overlap (higher first)."""
    pairs = []
    names = sorted(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if a.split(":")[0] != b.split(":")[0]:
                continue
            ga, gb = groups[a], groups[b]
            if ga["ci_low"] > gb["ci_high"]:
                pairs.append([a, b])
            elif gb["ci_low"] > ga["ci_high"]:
                pairs.append([b, a])
    return pairs


def max_over_min(groups: dict[str, dict]) -> float | None:
    """Highest group FPIR over the lowest; None when the lowest is zero (not measurable)."""
    rates = [g["fpir"] for g in groups.values()]
    if not rates or min(rates) == 0:
        return None
    return round(max(rates) / min(rates), 4)


def watchlist_report(scores: np.ndarray, labels: list[tuple[str, ...]], operating: float, watchlist_size: int) -> dict:
    """Groups at the operating threshold plus every fixed threshold, and the lowest threshold at
    and above which no group differs significantly (the equitable floor on this data)."""
    at = {t: group_rates(scores, labels, t) for t in EQUITY_THRESHOLDS}
    by_threshold = [
        {"threshold": t, "max_over_min": max_over_min(g), "significant_pairs": significant_pairs(g), "groups": g} for t, g in at.items()
    ]
    floor = None
    for entry in reversed(by_threshold):
        if entry["significant_pairs"]:
            break
        floor = entry["threshold"]
    groups = group_rates(scores, labels, operating)
    return {
        "watchlist_size": watchlist_size,
        "searches": int(len(scores)),
        "operating_threshold": operating,
        "groups": groups,
        "max_over_min": max_over_min(groups),
        "significant_difference": bool(significant_pairs(groups)),
        "significant_pairs": significant_pairs(groups),
        "equitable_floor": floor,
        "by_threshold": by_threshold,
    }
