"""The compiled fast path and jsonschema (the reference) agree on every message type."""

from __future__ import annotations

import copy
import json

import pytest

from services.common.envelope import encode
from services.common.schemas import default_registry
from tests.watchlist.test_matcher_stage import probe, unit

FACE = probe(unit(1)).data["face"]


def _valid_examples() -> dict[str, dict]:
    registry = default_registry()
    def body(schema: str, data: dict) -> dict:
        value = encode(schema, data)
        header_len = int.from_bytes(value[4:8], "big")
        return json.loads(value[8 : 8 + header_len])["data"]
    face = body("lfr.faces.v1", FACE)
    examples = {
        "lfr.frames.v1": body("lfr.frames.v1", {"camera_id": "c", "deployment_id": "d", "seq": 0, "captured_at_ms": 1, "width": 2, "height": 2,
                                                "media_type": "image/jpeg", "image": b"x"}),
        "lfr.faces.v1": face,
        "lfr.embeddings.v1": body("lfr.embeddings.v1", probe(unit(2)).data),
        "lfr.audit.v2": {"actor": "a", "action": "watchlist.add", "at_ms": 1, "service": "s", "details": {"n": 1, "why": None}},
        "lfr.adjudications.v3": {"alert_id": "a1", "subject_id": "s1", "deployment_id": "d1", "camera_id": "c1", "stage": "outcome",
                                 "decision": "confirmed", "outcome": "spoken_to", "actor": "pc1", "role": "operator", "alert_at_ms": 1,
                                 "decided_at_ms": 5, "alert_to_decision_ms": 4},
        "lfr.counts.v2": {"count_id": "lfr.frames.v1:0:1-4:4", "deployment_id": "d1", "faces": 4, "counted_at_ms": 1},
    }
    assert set(examples) <= registry.names
    return examples


def _mutations(example: dict):
    """Drop each key, give each leaf a wrong type, add an unknown key, at every depth."""
    def walk(node, path):
        if isinstance(node, dict):
            for key in list(node):
                yield path + [key], "drop"
                yield from walk(node[key], path + [key])
            yield path + ["__extra__"], "extra"
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, path + [i])
            yield path, "list_short"
        else:
            yield path, "wrong_type"
    for path, kind in walk(example, []):
        mutated = copy.deepcopy(example)
        parent = mutated
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1] if path else None
        if kind == "drop":
            del parent[last]
        elif kind == "extra":
            parent["__extra__"] = 1
        elif kind == "list_short":
            target = parent[last] if path else mutated
            if isinstance(target, list) and target:
                target.pop()
        else:
            value = parent[last]
            parent[last] = "x" if not isinstance(value, str) else 12345
        yield mutated


@pytest.mark.parametrize("schema", ["lfr.frames.v1", "lfr.faces.v1", "lfr.embeddings.v1", "lfr.audit.v2", "lfr.adjudications.v3", "lfr.counts.v2"])
def test_fast_path_agrees_with_jsonschema(schema):
    registry = default_registry()
    example = _valid_examples()[schema]
    cases = [example, *_mutations(example)]
    assert len(cases) > 5
    for case in cases:
        reference = registry._validators[schema].is_valid(case)
        try:
            registry._fast[schema](case)
            fast = True
        except Exception:  # noqa: BLE001 - fastjsonschema's exception means invalid
            fast = False
        assert fast == reference, f"{schema}: fast={fast} reference={reference} for {case}"
