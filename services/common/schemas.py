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
        self._validators = {
            name: jsonschema.Draft202012Validator(doc, registry=registry)
            for name, doc in documents.items()
            if name not in _SHARED
        }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._validators)

    def validate(self, name: str, body: Mapping[str, Any]) -> None:
        validator = self._validators.get(name)
        if validator is None:
            raise UnknownSchemaError(f"unknown message type {name!r}")
        error = jsonschema.exceptions.best_match(validator.iter_errors(body))
        if error is not None:
            raise SchemaValidationError(describe_violation(name, error))


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
