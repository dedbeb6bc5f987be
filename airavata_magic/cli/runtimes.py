"""``airavata-magic runtimes|request|wait|stop|stat|authenticate``: the runtime magics' twins."""
from __future__ import annotations

import argparse
from typing import Any

from ..errors import AiravataError
from ..runtime import SPEC_FIELDS
from . import seconds_arg


def _manager():
    from .. import get_manager

    return get_manager()


def _cmd_runtimes(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..api import runtimes

    table = runtimes()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False) if len(table) else "no runtimes")
    return 0


def _cmd_request(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in SPEC_FIELDS}
    from ..api import request_runtime  # the API scripts call: one code path

    print(request_runtime(args.name, file=args.file, resource=args.resource, use=args.use, keep=True,
                          **overrides).message)
    if args.wait:
        return _cmd_wait(args)
    return 0


def _cmd_wait(args: argparse.Namespace) -> int:
    from ..manager import print_state_changes

    _manager().wait(args.name, timeout=getattr(args, "timeout", None), on_update=print_state_changes())
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    m = _manager()
    if args.all == bool(args.name):
        raise AiravataError("give a runtime NAME or --all")
    for line in (m.stop_all() if args.all else [m.stop(args.name)]):
        print(line)
    return 0


def _cmd_stat(args: argparse.Namespace) -> int:
    for key, value in _manager().stat(args.name).items():
        print(f"{key:>15}: {'' if value is None else value}")
    return 0


def _cmd_authenticate(args: argparse.Namespace) -> int:
    rows = _manager().authenticate(args.file, args.resources or None)
    from ..manager import auth_rows

    print("\n".join(auth_rows(rows)))
    return 0 if all(r.ok for r in rows) else 1


def register(sub: Any) -> None:
    """Add the runtime commands to the ``airavata-magic`` command line."""
    p = sub.add_parser("runtimes", help="list this user's runtimes")
    p.set_defaults(func=_cmd_runtimes)

    p = sub.add_parser("request", help="request a runtime (as %%request_runtime)")
    p.add_argument("name")
    p.add_argument("--file")
    p.add_argument("--resource")
    p.add_argument("--use")
    for flag in SPEC_FIELDS:
        if flag == "setup":  # shell lines: repeatable, one line each
            p.add_argument("--setup", action="append", metavar="LINE", help="a shell line run before the kernel")
        else:
            p.add_argument(f"--{flag}")
    p.add_argument("--wait", action="store_true", help="then wait until it is ready")
    p.add_argument("--timeout", type=seconds_arg)
    p.set_defaults(func=_cmd_request)

    p = sub.add_parser("wait", help="wait until a runtime is ready")
    p.add_argument("name")
    p.add_argument("--timeout", type=seconds_arg)
    p.set_defaults(func=_cmd_wait)

    p = sub.add_parser("stop", help="stop a runtime (or --all)")
    p.add_argument("name", nargs="?")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=_cmd_stop)

    p = sub.add_parser("stat", help="details of one runtime")
    p.add_argument("name")
    p.set_defaults(func=_cmd_stat)

    p = sub.add_parser("authenticate", help="check resources' credentials")
    p.add_argument("resources", nargs="*")
    p.add_argument("--file")
    p.set_defaults(func=_cmd_authenticate)
