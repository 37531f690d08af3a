"""Keys per force: a key registered for one force (`lfr keys register --force`) signs and
authorises only that force's records.

A key's force is the one its verified registration names (services/common/signing.py,
``Keyring.registration``: signed by a key administrator), force ``default`` when the
registration names none. A key nobody registered makes no claim of rank or force and is
judged as before forces (service keys of a single-force installation); register every
officer's key with its force.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from services.common.errors import LfrError
from services.common.signing import Keyring

from .naming import DEFAULT_FORCE
from .place import is_legacy_name


#: set only by `lfr forces migrate` while it reads force default's history: keys re-registered for
#: the force it moves into signed that history as the installation's (services/governance/forces/migrate.py)
_MIGRATING_TO: ContextVar[str | None] = ContextVar("lfr_migrating_to", default=None)


@contextlib.contextmanager
def reading_history_for(force: str) -> Iterator[None]:
    """Inside: a key registered for ``force`` is also accepted on force default's records."""
    token = _MIGRATING_TO.set(force)
    try:
        yield
    finally:
        _MIGRATING_TO.reset(token)


class KeyForceRefused(LfrError, ValueError):
    """A key of one force used for another force's record (exit 3: refused on purpose)."""

    exit_code = 3


def owning_force(force: str | None) -> str:
    """The force a record's ``force`` field names: ``default`` when absent or a pre-force free-text name."""
    return DEFAULT_FORCE if not force or is_legacy_name(force) else force


def key_force(keyring: Keyring, key_id: str, judge=None) -> str | None:
    """The force ``key_id`` is registered for; None for a key nobody registered. ``judge``: the
    reader's AuditIndex.registration_valid, so a registration is judged by its audit position."""
    registered = keyring.registration(key_id, judge=judge)
    if registered is None:
        return None
    return owning_force(registered.force)


def foreign_key(keyring: Keyring, key_id: str, force: str, *, registered_only: bool = False, judge=None) -> str | None:
    """Why ``key_id`` may not sign for ``force`` (None when it may). ``registered_only``: an
    unregistered key is refused too (an authorisation needs a registered rank anyway). ``judge``
    as for key_force."""
    owner = key_force(keyring, key_id, judge)
    if owner is None:
        return f"key {key_id} is registered for no force" if registered_only else None
    if owner != owning_force(force) and not (owning_force(force) == DEFAULT_FORCE and owner == _MIGRATING_TO.get()):
        return f"key {key_id} belongs to force {owner}, not to force {owning_force(force)}"
    return None


def require_key_force(keyring: Keyring, key_id: str, force: str, what: str) -> None:
    """KeyForceRefused when ``key_id`` is registered for another force than ``force``."""
    problem = foreign_key(keyring, key_id, force)
    if problem is not None:
        raise KeyForceRefused(f"refused: {what}: {problem}")
