"""`lfr forces add|list|show`: the force registry (lfr.forces.v1).

`list --json` prints a list of objects with the stable keys ``id`` and ``name``. A bad id or
email is a usage error (exit 2, one line); registering an id that exists is refused (exit 3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def register(commands: argparse._SubParsersAction) -> None:
    from services.common.cli_support import kafka_option

    forces = commands.add_parser("forces", help="the police forces (tenants) registered on this platform")
    sub = forces.add_subparsers(dest="forces_command", required=True)

    add = sub.add_parser("add", help="register a force (signed and audited)")
    add.add_argument("--id", required=True, help="2-32 lowercase letters, digits, hyphens; becomes the topic prefix lfr.<id>.")
    add.add_argument("--name", help="the force's name (default for the national roll-out's ids: gmp, wyp, beds, surrey, sussex, tvp, hampshire)")
    add.add_argument("--controller", required=True, help="the data controller's contact email (the force's data protection officer)")
    add.add_argument("--controller-name", help="the data controller's name or office")
    add.add_argument("--role", action="append", default=[], metavar="ROLE=GROUP",
                     help="the OpenID Connect group granting a console role in this force (default <id>:<role>); repeatable")
    add.add_argument("--actor", help="who asks for this, kept in the audit as a claim (default: LFR_ACTOR, then $USER)")
    kafka_option(add)
    add.set_defaults(func=_add)

    listing = sub.add_parser("list", help="every registered force (default included)")
    listing.add_argument("--json", action="store_true", help="a JSON list of objects with id and name")
    kafka_option(listing)
    listing.set_defaults(func=_list)

    show = sub.add_parser("show", help="one force's record as JSON")
    show.add_argument("id")
    kafka_option(show)
    show.set_defaults(func=_show)

    migrate = sub.add_parser("migrate", help="move a single-force installation (force default's topics) into registered force F: "
                             "audit trail, watchlist, deployments, alerts, adjudications, counts, evidence (services/governance/forces/migrate.py)")
    migrate.add_argument("--to", required=True, help="the registered force id; its topics exist (lfr topics apply --force F) and are empty")
    kafka_option(migrate)
    migrate.set_defaults(func=_migrate)


def _settings():
    from services.common.settings import ForceSettings, load_settings

    return load_settings(ForceSettings)


def _roles(pairs: list[str]) -> dict[str, str]:
    from .naming import NamingError

    roles = {}
    for pair in pairs:
        role, sep, group = pair.partition("=")
        if not sep or not role or not group:
            raise NamingError(f"--role {pair!r}: give ROLE=GROUP, e.g. supervisor=gmp-lfr-supervisors")
        roles[role] = group
    return roles


def _add(args: argparse.Namespace) -> int:
    from services.common.topics import load_topic_specs

    from .registry import ForceRefused, new_force
    from .store import ForceStore

    actor = args.actor or os.environ.get("LFR_ACTOR") or os.environ.get("USER") or "unknown"
    force = new_force(args.id, args.name, args.controller, controller_name=args.controller_name, roles=_roles(args.role),
                      actor=actor, now_ms=int(time.time() * 1000), platform_topics=[s.name for s in load_topic_specs()])
    store = ForceStore(_settings())
    if force.force_id in store.read():
        raise ForceRefused(f"force {force.force_id!r} is already registered (lfr forces show {force.force_id})")
    store.publish(force, actor)
    print(json.dumps(force.summary()))
    return 0


def _list(args: argparse.Namespace) -> int:
    from .store import read_registry

    settings = _settings()
    registry = read_registry(settings)
    rows = [force.summary() for force in registry]
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'ID':<16} {'NAME':<44} CONTROLLER")
        for row in rows:
            print(f"{row['id']:<16} {row['name']:<44} {row['controller']}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from .migrate import migrate

    migrate(args.to)
    return 0


def _show(args: argparse.Namespace) -> int:
    from .naming import check_force_id
    from .store import read_registry

    check_force_id(args.id)  # a bad id is a usage error, not "not registered"
    settings = _settings()
    force = read_registry(settings).get(args.id)
    if force is None:
        print(f"lfr forces: force {args.id!r} is not registered", file=sys.stderr)
        return 1
    print(json.dumps(force.to_data(), indent=2))
    return 0
