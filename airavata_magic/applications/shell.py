"""Run a shell script on a resource: over its pooled SSH connection, or here for ``local``.

``login=True`` runs it in a login shell (``bash -l``), where sites define ``module`` and conda.
"""
from __future__ import annotations

import subprocess

from ..profile import Resource
from ..errors import BackendError, InvalidArgument

REMOTE_KINDS = ("slurm", "ssh")


def kind_phrase(kind: str) -> str:
    """``ssh`` -> "an ssh", ``slurm`` -> "a slurm" (for messages)."""
    return f"an {kind}" if kind in ("ssh",) or kind[:1] in "aeiou" else f"a {kind}"


def run_script(resource: Resource, script: str, *, login: bool = True, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``script`` with bash on ``resource`` -> (exit code, stdout, stderr)."""
    argv = ["bash", "-l", "-c", script] if login else ["bash", "-c", script]
    if resource.kind == "local":
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BackendError(f"local: the query did not finish in {timeout:.0f} s") from None
        return p.returncode, p.stdout, p.stderr
    if resource.kind not in REMOTE_KINDS:
        raise InvalidArgument(f"{resource.name} is {kind_phrase(resource.kind)} resource: no shell to ask; "
                              f"use a slurm, ssh or local resource")
    from ..backends.ssh_launched import target_of  # paramiko: only when a remote resource is asked
    from ..transport.ssh import connection_for

    return connection_for(target_of(resource.settings)).run(argv, timeout=timeout)


def identity(resource: Resource) -> str:
    """What makes two answers comparable: the same kind, host, port and user (cache key)."""
    s = resource.settings
    return f"{resource.kind}:{s.get('user', '')}@{s.get('host', '')}:{s.get('port', 22)}"
