"""``airavata-magic session start|stop|load``: added to the ``session`` command group by the CLI
module that owns it, with one call: ``add_session_commands(session_subparsers)``."""
from __future__ import annotations

import argparse

from ..errors import InvalidArgument


def _start(args: argparse.Namespace) -> int:
    from . import start

    return start(args.name, append=args.append)


def _stop(args: argparse.Namespace) -> int:
    from . import stop

    print(stop(args.name))
    return 0


def _load(args: argparse.Namespace) -> int:
    """Shell sessions re-run in a fresh bash; script sessions re-run their API calls here."""
    from ..sessions.journal import SessionStore

    kind = SessionStore().read(args.name)["metadata"].get("airavata", {}).get("session", {}).get("kind")
    if kind == "shell":
        from . import load

        return load(args.name, dry_run=args.dry_run)
    if kind == "script":
        from ..api import session

        return session.load(args.name, dry_run=args.dry_run)
    raise InvalidArgument(f"session {args.name!r} was recorded in a notebook: `airavata-magic session replay "
                          f"{args.name}` runs it with papermill, or %session load {args.name} in a notebook")


def add_session_commands(session: argparse._SubParsersAction) -> None:
    """Add ``start``, ``stop`` and ``load`` to the ``session`` subcommands."""
    p = session.add_parser("start", help="record a shell session in this terminal (exit or `session stop` ends it)")
    p.add_argument("name")
    p.add_argument("--append", action="store_true", help="continue an existing shell session")
    p.set_defaults(func=_start)
    p = session.add_parser("stop", help="end a recording shell session")
    p.add_argument("name", nargs="?", help="default: the one this runs in, or the only one recording")
    p.set_defaults(func=_stop)
    p = session.add_parser("load", help="re-run a shell (or script) session's commands, stopping at the first failure")
    p.add_argument("name")
    p.add_argument("--dry-run", action="store_true", help="print the commands instead")
    p.set_defaults(func=_load)
