"""Batch commands: a shell command run on a resource as a job, not a kernel (``compute execute``).

On a ``slurm`` resource the command becomes a batch job (sbatch, the same job-script template as
kernels); on an ``ssh`` resource it runs over SSH. Its output is streamed back while it runs and
its exit code becomes the command line's exit code.
"""
from __future__ import annotations

import sys
from typing import Any

from . import profile as profiles
from .backends import backend_class
from .errors import InvalidArgument
from .runtime import RuntimeSpec


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
    try:
        return int(backend.run_batch(command, spec, _write(sys.stdout), _write(sys.stderr)))
    finally:
        backend.close()
