"""The core's fleet register: which vans exist and which force each serves now (one JSON file).

    {"vans": [{"van_id": "van-1", "force": "gmp"}, ...]}

The intake (services/van/fleet/intake.py) refuses a forwarded record or heartbeat from a van not
listed, or naming another force than the one listed. Re-lending a van to another force is an
edit of this file (and a new van key: services/van/fleet/vankey.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .settings import FORCE_PATTERN

VAN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegisterError(ValueError):
    """The register file is unreadable or malformed (the intake does not start)."""


def parse_register(document: object) -> dict[str, str]:
    """van id -> force; raises RegisterError naming the first bad entry."""
    if not isinstance(document, dict) or not isinstance(document.get("vans"), list):
        raise RegisterError('fleet register: expected {"vans": [{"van_id": ..., "force": ...}]}')
    vans: dict[str, str] = {}
    for index, entry in enumerate(document["vans"]):
        if not isinstance(entry, dict) or set(entry) - {"van_id", "force", "description"}:
            raise RegisterError(f"fleet register: vans[{index}] must be an object with van_id and force")
        van, force = entry.get("van_id"), entry.get("force")
        if not isinstance(van, str) or not VAN_ID.match(van):
            raise RegisterError(f"fleet register: vans[{index}].van_id {van!r} is not a van id")
        if not isinstance(force, str) or not re.match(FORCE_PATTERN, force):
            raise RegisterError(f"fleet register: vans[{index}].force {force!r} is not a force id")
        if van in vans:
            raise RegisterError(f"fleet register: van {van!r} listed twice")
        vans[van] = force
    return vans


def load_register(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        return parse_register(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise RegisterError(f"fleet register {path}: {exc}") from exc
