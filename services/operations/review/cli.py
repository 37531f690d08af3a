"""`lfr users add|remove|list`: the console's local users file (argon2id hashes)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path


def _file(args: argparse.Namespace):
    from services.common.settings import ReviewSettings, load_settings

    from .users import UsersFile

    return UsersFile(args.users_file or load_settings(ReviewSettings).users_file)


def _add(args: argparse.Namespace) -> int:
    password = os.environ.get("LFR_NEW_USER_PASSWORD") if args.password_from_env else getpass.getpass("password: ")
    try:
        user = _file(args).add(args.username, password or "", args.role, tuple(args.deployment), args.force)
    except ValueError as exc:
        print(f"lfr users add: {exc}", file=sys.stderr)
        return 2
    print(f"added {user.username} ({user.role} of force {user.force}{': ' + ', '.join(user.deployments) if user.deployments else ''})")
    return 0


def _remove(args: argparse.Namespace) -> int:
    if not _file(args).remove(args.username):
        print(f"lfr users remove: no user {args.username}", file=sys.stderr)
        return 1
    print(f"removed {args.username}")
    return 0


def _list(args: argparse.Namespace) -> int:
    for user in _file(args).list():
        print(f"{user.username:<24} {user.role:<10} {user.force:<12} {','.join(user.deployments)}")
    return 0


def register(commands) -> None:
    from .users import ROLES

    users = commands.add_parser("users", help="local users of the review console (when OIDC is not configured)")
    sub = users.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help="add or replace a user (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--deployment", action="append", default=[], help="an operator's deployment (repeat for several)")
    add.add_argument("--force", default="default", help="the user's force id: they sign in to that force's console only and see "
                     "nothing of another force's (a national user: counts by force only)")
    add.add_argument("--password-from-env", action="store_true", help="read LFR_NEW_USER_PASSWORD instead of asking")
    remove = sub.add_parser("remove", help="remove a user")
    remove.add_argument("username")
    listing = sub.add_parser("list", help="list users (never hashes)")
    for parser in (add, remove, listing):
        parser.add_argument("--users-file", type=Path, default=None, help="overrides LFR_USERS_FILE")
    add.set_defaults(func=_add)
    remove.set_defaults(func=_remove)
    listing.set_defaults(func=_list)
