"""``airavata-magic fanout ...`` and ``airavata-magic scale ...``: the CLI twins of the magics.

Progress is one tqdm bar on stderr; the gathered hits (or the scale table) go to stdout as CSV
with ``--csv PATH``, else as a text table. Errors are one ``error: ...`` line, exit 2 (cli.main).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any


def _print_result(result: Any, csv: str | None) -> int:
    print(repr(result), file=sys.stderr)
    if csv:
        result.hits.to_csv(csv, index=False)
        print(f"hits written to {csv}", file=sys.stderr)
    elif len(result.hits):
        print(result.hits.to_string(index=False, max_rows=50))
    for row in result.failed.itertuples(index=False):
        tail = row.stderr_tail.strip().splitlines()[-3:]
        print(f"FAILED {row.input}: {row.reason}" + ("".join("\n    " + t for t in tail)), file=sys.stderr)
    return 1 if len(result.failed) else 0


def _cmd_fanout(args: argparse.Namespace) -> int:
    from . import api
    from .live import TqdmBar

    bar = TqdmBar()
    try:
        if args.action == "gather":
            result = api.gather(args.target, wait=not args.no_wait, timeout=args.timeout, progress=bar)
        elif args.action == "status":
            print(api.status(args.target).to_string(index=False))
            return 0
        elif args.action == "cancel":
            api.cancel(args.target)
            return 0
        elif args.action == "list":
            print(api.runs().to_string(index=False))
            return 0
        elif args.retry:
            result = api.retry(args.retry, wait=not args.no_wait, timeout=args.timeout, progress=bar)
        else:
            if not args.target:
                from ..errors import InvalidArgument

                raise InvalidArgument("give the algorithm: airavata-magic fanout run ALG.py --inputs 'GLOB' --resource R")
            result = api.run(args.target, args.inputs, resource=args.resource, runtime=args.runtime,
                             parallel=args.parallel, output=args.output, wait=not args.no_wait,
                             timeout=args.timeout, file=args.file, progress=bar)
    finally:
        bar.close()
    if args.no_wait:
        print(result.run_id)
        return 0
    return _print_result(result, args.csv)


def _cmd_scale(args: argparse.Namespace) -> int:
    from .scale import parse_world_sizes, scale_run

    from ..progress import Progress

    sizes = parse_world_sizes(args.world_sizes)
    with Progress(f"scale run over world sizes {','.join(map(str, sizes))}", notebook=False) as bar:
        result = scale_run(args.script, world_sizes=sizes, resource=args.resource, runtime=args.runtime,
                           gpus_per_rank=args.gpus_per_rank, threads_per_rank=args.threads_per_rank,
                           timeout=args.timeout, file=args.file, progress=lambda msg: bar.set(0, note=msg))
    if args.csv:
        result.table.to_csv(args.csv, index=False)
    print(result.table.to_string(index=False))
    if args.plot:
        from .plot import plot_scale

        plot_scale(result.table).savefig(args.plot, dpi=100)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``fanout`` and ``scale`` to the ``airavata-magic`` command line."""
    p = subparsers.add_parser("fanout", help="one algorithm over many inputs (Slurm array, Indexed Job, local pool)")
    p.add_argument("action", choices=["run", "gather", "status", "cancel", "list"],
                   help="run ALG.py | gather RUN_ID | status RUN_ID | cancel RUN_ID | list")
    p.add_argument("target", nargs="?", help="ALG.py for run; RUN_ID for gather/status/cancel")
    p.add_argument("--inputs", help="glob of inputs: 'data/*.h5', 'RESOURCE:/path/*.h5' or 'STORAGE:sub/*.h5'")
    p.add_argument("--runtime", help="a runtime preset from the profile")
    p.add_argument("--resource", help="a slurm, kubernetes or local resource")
    p.add_argument("--parallel", default="4", help="tasks running at once")
    p.add_argument("--output", help="local folder for the outputs (default: named after the run)")
    p.add_argument("--retry", metavar="RUN_ID", help="rerun only the inputs that failed in RUN_ID")
    p.add_argument("--no-wait", action="store_true", help="print the run id and return at once")
    p.add_argument("--timeout", type=float, help="stop waiting after S seconds (tasks keep running)")
    p.add_argument("--csv", help="write the gathered hits to this CSV file")
    p.add_argument("--file", help="profile file")
    p.set_defaults(func=_cmd_fanout)

    scale = subparsers.add_parser("scale", help="a torch.distributed script over several world sizes")
    verbs = scale.add_subparsers(dest="scale_command", metavar="SUBCOMMAND")
    verbs.required = True
    s = verbs.add_parser("run", help="one run per world size; the table (and --plot) of time, throughput and cost")
    s.add_argument("script")
    s.add_argument("--world-sizes", default="1,2,4")
    s.add_argument("--runtime")
    s.add_argument("--resource")
    s.add_argument("--gpus-per-rank", default="0")
    s.add_argument("--threads-per-rank", default="1")
    s.add_argument("--timeout", type=float, default=900.0)
    s.add_argument("--csv", help="write the table to this CSV file")
    s.add_argument("--plot", help="write the time/cost plot to this PNG file")
    s.add_argument("--file", help="profile file")
    s.set_defaults(func=_cmd_scale)
