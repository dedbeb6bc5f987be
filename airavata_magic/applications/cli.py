"""``airavata-magic application list|show|add|register``: the CLI twin of ``%application``."""
from __future__ import annotations

import argparse
import sys
from typing import Any


def _print(df: Any) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60,
                           "display.max_rows", None):
        print(df.to_string(index=False) if len(df) else "nothing found")


def _list(args: argparse.Namespace) -> int:
    from . import api

    from tqdm import tqdm  # on stderr: stdout stays the table

    with tqdm(desc="resources answered", unit="resource", file=sys.stderr, leave=False,
              disable=not sys.stderr.isatty()) as bar:
        df = api.list_applications(args.resource, args.search, refresh=args.refresh, file=args.file,
                                   progress=lambda _name: bar.update(1))
    for note in df.attrs.get("skipped", []):
        print(f"left out {note}", file=sys.stderr)
    _print(df)
    return 0


def _show(args: argparse.Namespace) -> int:
    from . import api

    df = api.show(args.app, args.resource, refresh=args.refresh, file=args.file)
    for _, row in df.iterrows():
        print("\n".join(f"{k:>13}: {'' if v is None else v}" for k, v in row.items()) + "\n")
    return 0


def _add(args: argparse.Namespace) -> int:
    from . import api

    print(api.add(args.app, runtime=args.runtime, resource=args.resource, refresh=args.refresh, file=args.file))
    return 0


def _register(args: argparse.Namespace) -> int:
    from . import api

    print(api.register(args.name, args.command, args.resource, description=args.description,
                       private=args.private, file=args.file))
    return 0


def register(subparsers: Any) -> None:
    """Add ``application list|show|add|register`` to the ``airavata-magic`` command line."""
    app = subparsers.add_parser("application", help="modules, conda environments and registered executables")
    sub = app.add_subparsers(dest="application_command", metavar="SUBCOMMAND")
    sub.required = True
    file_help = "profile file (default: $AIRAVATA_MAGIC_PROFILE, ./cybershuttle.yml, user config)"

    p = sub.add_parser("list", help="list applications of the profile's resources (cached per resource)")
    p.add_argument("--resource", action="append", help="resource to ask (may repeat; default: all)")
    p.add_argument("--search", help="keep names or descriptions containing this text")
    p.add_argument("--refresh", action="store_true", help="ask again instead of using the cached answer")
    p.add_argument("--file", help=file_help)
    p.set_defaults(func=_list)

    p = sub.add_parser("show", help="versions, help text and prerequisites of one application")
    p.add_argument("app", metavar="NAME[/VERSION]")
    p.add_argument("--resource")
    p.add_argument("--refresh", action="store_true")
    p.add_argument("--file", help=file_help)
    p.set_defaults(func=_show)

    p = sub.add_parser("add", help="add its setup line to a preset or resource in cybershuttle.yml")
    p.add_argument("app", metavar="NAME[/VERSION]")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--runtime", help="a preset in runtimes:")
    where.add_argument("--resource", help="a resource in resources:")
    p.add_argument("--refresh", action="store_true")
    p.add_argument("--file", help=file_help)
    p.set_defaults(func=_add)

    p = sub.add_parser("register", help="register your own executable as an application")
    p.add_argument("name")
    p.add_argument("--command", required=True, help="path of the executable on the resource")
    p.add_argument("--resource", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--private", action="store_true", help="visible to you only (else shared in the profile)")
    p.add_argument("--file", help=file_help)
    p.set_defaults(func=_register)
