"""Local users (the embedded default sign-in): a JSON file of argon2id hashes, roles and scopes.

``lfr users add|remove|list`` edits it; the console reads it on each sign-in, so a removed user
cannot sign in again (their open sessions end with the session lifetime, or at once on restart).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("operator", "supervisor", "auditor", "admin", "national")
DEFAULT_FORCE = "default"  # services/governance/forces/naming.py; a user written before forces is force default's
# argon2-cffi's defaults are the RFC 9106 low-memory profile of argon2id.
_HASHER = PasswordHasher()
# Verified against when the user does not exist, so a wrong user name costs the same time.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


@dataclass(frozen=True)
class User:
    username: str
    role: str
    deployments: tuple[str, ...] = ()  # an operator's scope; other roles see every deployment of their force
    force: str = DEFAULT_FORCE  # the force the user belongs to: they see nothing of another force's


class UsersFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def _save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def add(self, username: str, password: str, role: str, deployments: tuple[str, ...] = (), force: str = DEFAULT_FORCE) -> User:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if role == "operator" and not deployments:
            raise ValueError("an operator needs at least one deployment (--deployment)")
        if len(password) < 12:
            raise ValueError("password must be at least 12 characters")
        if not username or len(username) > 64 or not all(c.isalnum() or c in "._-@" for c in username):
            raise ValueError("user name: 1-64 letters, digits and . _ - @")
        data = self._load()
        from services.governance.forces.naming import check_force_id  # noqa: PLC0415

        check_force_id(force)  # NamingError (a ValueError) for a name that is no force id
        data[username] = {"hash": _HASHER.hash(password), "role": role, "deployments": list(deployments), "force": force}
        self._save(data)
        return User(username, role, tuple(deployments), force)

    def remove(self, username: str) -> bool:
        data = self._load()
        if data.pop(username, None) is None:
            return False
        self._save(data)
        return True

    def list(self) -> list[User]:
        return [User(name, entry["role"], tuple(entry.get("deployments", ())), entry.get("force", DEFAULT_FORCE))
                for name, entry in sorted(self._load().items())]

    def verify(self, username: str, password: str) -> User | None:
        entry = self._load().get(username)
        try:
            _HASHER.verify(entry["hash"] if entry else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if entry is None:
            return None
        return User(username, entry["role"], tuple(entry.get("deployments", ())), entry.get("force", DEFAULT_FORCE))
