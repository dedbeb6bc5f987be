"""``airavata-magic compute execute 'CMD' --resource R``: a batch command, not a kernel.

On a ``slurm`` resource the command becomes a batch job (sbatch, the same job-script template as
kernels); on an ``ssh`` resource it runs over SSH. Its output is streamed back while it runs and
its exit code becomes the command line's exit code.
"""
from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from . import profile as profiles
from .backends import backend_class
from .errors import InvalidArgument
from .runtime import RuntimeSpec
from .cluster.api import resources, usage  # noqa: F401 - am.compute.resources() / usage() (issue 12)
from .cluster.cli import add_verbs as _cluster_verbs


def _write(stream: Any):
    def write(data: bytes) -> None:
        stream.buffer.write(data) if hasattr(stream, "buffer") else stream.write(data.decode(errors="replace"))
        stream.flush()
    return write


def execute(command: str, resource: str, *, file: str | None = None, cpus: Any = None, gpus: Any = None,
            memory: Any = None, walltime: Any = None, partition: str | None = None,
            account: str | None = None) -> int:
    """Run ``command`` on ``resource`` with the given resources; returns its exit code."""
    if not command or not command.strip():
        raise InvalidArgument("compute execute needs a command, e.g. 'python train.py'")
    prof = profiles.load_profile(file)
    res = prof.resource(resource)
    spec = RuntimeSpec.from_values({"cpus": cpus, "gpus": gpus, "memory": memory, "walltime": walltime,
                                    "partition": partition, "account": account})
    backend = backend_class(res.kind)(res, lambda name: None)
    run_batch = getattr(backend, "run_batch", None)
    if run_batch is None:
        raise InvalidArgument(f"compute execute runs on slurm and ssh resources; {resource} is {res.kind}")
    try:
        return int(run_batch(command, spec, _write(sys.stdout), _write(sys.stderr)))
    finally:
        backend.close()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: cancel the job on the way out, as Ctrl-C does


def _handler(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    return execute(args.cmd, args.resource, file=args.file, cpus=args.cpus, gpus=args.gpus, memory=args.memory,
                   walltime=args.walltime, partition=args.partition, account=args.account)


def register(subparsers: Any) -> None:
    """Add ``compute execute`` to the ``airavata-magic`` command line."""
    compute = subparsers.add_parser("compute", help="run batch commands on a resource")
    sub = compute.add_subparsers(dest="compute_command", metavar="SUBCOMMAND")
    sub.required = True
    _cluster_verbs(sub)  # compute list | usage
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
