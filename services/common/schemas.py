"""The JSON Schemas in schemas/ are the source of truth for every message type.

Each file is one versioned type (``lfr.faces.v1.json`` has ``$id`` ending in that name);
``lfr.common.v1.json`` holds shared definitions. Validators are compiled once per process.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .errors import SchemaValidationError, UnknownSchemaError

SCHEMA_NAME = re.compile(r"^lfr\.[a-z_]+\.v[0-9]+$")
_SHARED = ("lfr.common.v1",)


def schemas_dir() -> Path:
    """LFR_SCHEMAS_DIR, else the schemas/ folder beside the services package."""
    configured = os.environ.get("LFR_SCHEMAS_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "schemas"


class SchemaRegistry:
    """Validators for every message type found in one schemas folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        documents: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob("lfr.*.json")):
            documents[path.name.removesuffix(".json")] = json.loads(path.read_text(encoding="utf-8"))
        if not documents:
            raise FileNotFoundError(f"no lfr.*.json schemas in {directory}")
        for name, document in documents.items():
            if not document.get("$id", "").endswith("/" + name + ".json"):
                raise ValueError(f"schema {name}: $id must end with /{name}.json")
        registry = Registry().with_resources(
            (doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012))
            for doc in documents.values()
        )
        by_id = {doc["$id"]: doc for doc in documents.values()}
        self._validators = {
            name: jsonschema.Draft202012Validator(doc, registry=registry) for name, doc in documents.items() if name not in _SHARED
        }
        # Every message is validated at every boundary, and jsonschema costs ~1.5 ms for a face
        # message (mostly $ref resolution and per-keyword dispatch). The schemas are not
        # recursive and use keywords with the same meaning in draft 7, so each is also compiled
        # to Python code with its refs inlined: that answers "valid?" in microseconds, and
        # jsonschema is asked only to explain a failure.
        self._fast = {name: fastjsonschema.compile(_fast_form(documents[name], by_id)) for name in self._validators}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._validators)

    def validate(self, name: str, body: Mapping[str, Any]) -> None:
        validator = self._validators.get(name)
        if validator is None:
            raise UnknownSchemaError(f"unknown message type {name!r}")
        try:
            self._fast[name](body)
            return
        except fastjsonschema.JsonSchemaException:
            pass
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        # Both say invalid in practice; if only the compiled form objects, it is still invalid.
        raise SchemaValidationError(describe_violation(name, error) if error is not None else f"{name}: invalid")


def _fast_form(document: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    inlined = _inline_refs(document, document, by_id)
    return {key: value for key, value in inlined.items() if key not in ("$schema", "$id", "$defs")}


def _inline_refs(node: Any, document: dict[str, Any], by_id: dict[str, dict[str, Any]], depth: int = 0) -> Any:
    """A copy of ``node`` with every $ref replaced by its target (within ``document`` or a sibling file)."""
    if depth > 32:
        raise ValueError("schema $ref nesting too deep (recursive schema?)")
    if isinstance(node, list):
        return [_inline_refs(item, document, by_id, depth) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target_doc, pointer = _resolve(node["$ref"], document, by_id)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        target = _inline_refs(target_doc if not pointer else _pointer(target_doc, pointer), target_doc, by_id, depth + 1)
        return {"allOf": [target, _inline_refs(rest, document, by_id, depth)]} if rest else target
    return {key: value if key in ("$id", "$schema") else _inline_refs(value, document, by_id, depth) for key, value in node.items()}


def _resolve(ref: str, document: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
    location, _, pointer = ref.partition("#")
    if not location:
        return document, pointer
    base = document["$id"].rsplit("/", 1)[0]
    return by_id[location if "://" in location else f"{base}/{location}"], pointer


def _pointer(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for part in pointer.strip("/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def describe_violation(name: str, error: jsonschema.ValidationError) -> str:
    """Where and which rule failed, without echoing the offending value (it may be personal)."""
    where = "/" + "/".join(str(part) for part in error.absolute_path)
    rule = error.validator
    expected = error.validator_value
    if rule in ("required", "additionalProperties", "$ref", "prefixItems", "items", "properties"):
        return f"{name} {where}: {rule} failed ({_clip(error.message)})" if rule == "required" else f"{name} {where}: {rule} failed"
    return f"{name} {where}: {rule} {_clip(json.dumps(expected, default=str))} failed"


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def default_registry() -> SchemaRegistry:
    return SchemaRegistry(schemas_dir())
