"""``airavata-magic compute execute 'CMD' --resource R``: a batch command (see ``batch.execute``)."""
from __future__ import annotations

import argparse
import signal
from typing import Any

from ..batch import execute


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: cancel the job on the way out, as Ctrl-C does


def _handler(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    return execute(args.cmd, args.resource, file=args.file, cpus=args.cpus, gpus=args.gpus, memory=args.memory,
                   walltime=args.walltime, partition=args.partition, account=args.account)


from ..cluster.cli import add_verbs as add_cluster_verbs  # noqa: E402


def register(subparsers: Any) -> None:
    """Add ``compute execute`` to the ``airavata-magic`` command line."""
    compute = subparsers.add_parser("compute", help="run batch commands on a resource")
    sub = compute.add_subparsers(dest="compute_command", metavar="SUBCOMMAND")
    sub.required = True
    add_cluster_verbs(sub)  # compute list | usage (airavata_magic/cluster)
    p = sub.add_parser("execute", help="run a shell command as a batch job; output streamed, exit code returned")
    p.add_argument("cmd", metavar="CMD", help="shell command, e.g. 'python train.py --epochs 2'")
    p.add_argument("--resource", required=True, help="a slurm or ssh resource from the profile")
    p.add_argument("--file", help="profile file (default: $AIRAVATA_MAGIC_PROFILE, ./cybershuttle.yml, user config)")
    p.add_argument("--cpus", help="CPU cores (Slurm --cpus-per-task)")
    p.add_argument("--gpus", help="GPUs (Slurm --gres=gpu:N)")
    p.add_argument("--memory", help="memory: 512M, 8G, or MB as a bare number")
    p.add_argument("--walltime", help="minutes")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--account", help="Slurm account")
    p.set_defaults(func=_handler)
