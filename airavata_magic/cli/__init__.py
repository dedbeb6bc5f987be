"""``airavata-magic``: the magics for terminals and batch jobs.

Each group of commands lives in its own module with a ``register(subparsers)`` function; this
module builds the parser from them and turns every ``AiravataError`` into one line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Any, Callable, Sequence

from .. import checks
from ..errors import AiravataError, InvalidArgument, RuntimeFailed

#: Modules that add commands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "airavata_magic.cli.runtimes",
    "airavata_magic.cli.compute",
    "airavata_magic.cli.sessions",
    "airavata_magic.storage.cli",
    "airavata_magic.applications.cli",
    "airavata_magic.fanout.cli",
)


def _argument(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` from a check in ``checks`` (its message becomes argparse's)."""
    def convert(text: str) -> Any:
        try:
            return check(text)
        except InvalidArgument as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = check.__name__
    return convert


seconds_arg = _argument(lambda text: checks.seconds(text, "seconds"))
positive_int_arg = _argument(lambda text: checks.whole_number(text, "number", 1, 10**6))


def build_parser() -> argparse.ArgumentParser:
    """The whole ``airavata-magic`` parser."""
    parser = argparse.ArgumentParser(
        prog="airavata-magic",
        description="Runtimes, batch commands, sessions and templates of airavata-magic, from a terminal.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMAND_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code is 0, 1 (a check failed), 2 (an error) or 130 (Ctrl-C)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RuntimeFailed as e:
        if e.log_tail:
            print("--- log tail ---\n" + e.log_tail, file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except AiravataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


