"""``airavata-magic compute list|usage``: added to the existing ``compute`` command."""
from __future__ import annotations

import argparse
from typing import Any


def _list(args: argparse.Namespace) -> int:
    from ..applications.cli import _print
    from . import api

    _print(api.resources(args.resource, file=args.file))
    return 0


def _usage(args: argparse.Namespace) -> int:
    import sys

    from ..applications.cli import _print
    from . import api

    df = api.usage(args.resource, args.since, jobs=args.jobs, file=args.file)
    for note in df.attrs.get("skipped", []):
        print(note, file=sys.stderr)
    _print(df)
    return 0


def add_verbs(sub: Any) -> None:
    """``compute list`` and ``compute usage`` on the ``compute`` subcommand's subparsers."""
    p = sub.add_parser("list", help="the profile's resources: partitions, nodes, CPUs, GPUs")
    p.add_argument("--resource", help="one resource (default: all)")
    p.add_argument("--file", help="profile file")
    p.set_defaults(func=_list)
    p = sub.add_parser("usage", help="your consumption from Slurm accounting (sacct)")
    p.add_argument("--since", default="7d", help="how far back: 12h, 7d, 2w (default 7d)")
    p.add_argument("--resource", help="one slurm resource (default: every slurm resource)")
    p.add_argument("--jobs", action="store_true", help="one row per job instead of totals")
    p.add_argument("--file", help="profile file")
    p.set_defaults(func=_usage)
