"""What every fan-out engine does (Slurm array, Kubernetes Indexed Job, local process pool).

An engine submits some of a run's tasks, reports each task's state, brings the task output
directories back, and cancels. The run record (``record.FanoutRun``) is owned by ``api``; an engine
only returns facts (job ids, states) and never writes the record itself.
"""
from __future__ import annotations

import abc
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BackendError

if TYPE_CHECKING:
    from ..backends.base import Resource
    from .record import FanoutRun, Submission

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATES = (PENDING, RUNNING, DONE, FAILED)
STDERR_TAIL = 800  # bytes of a failed task's stderr shown in the live table and in .failed


@dataclass
class TaskStatus:
    """One task as last seen."""

    task: int
    state: str
    exit_code: int | None = None
    detail: str = ""  # why it failed, or the scheduler's state
    stderr_tail: str = ""


def state_from_exit(task: int, exit_text: str | None, stderr_tail: str = "") -> TaskStatus | None:
    """A finished task's status from its ``exit`` file, or None while there is none."""
    if exit_text is None or not exit_text.strip():
        return None
    try:
        rc = int(exit_text.strip().split()[0])
    except ValueError:
        return TaskStatus(task, FAILED, None, f"unreadable exit file {exit_text.strip()[:40]!r}", stderr_tail)
    if rc == 0:
        return TaskStatus(task, DONE, 0)
    return TaskStatus(task, FAILED, rc, f"exit code {rc}", stderr_tail)


class Engine(abc.ABC):
    """Runs a fan-out on one resource kind."""

    kind: str = ""
    #: whether inputs on this machine must be copied to the resource first
    needs_staging: bool = True
    #: the profile file that defines the resource (set by ``api.engine_for``)
    profile_path: str | None = None

    def __init__(self, resource: "Resource") -> None:
        self.resource = resource

    # -- what the resource sees ----------------------------------------------------------
    @abc.abstractmethod
    def run_dir(self, run_id: str) -> str:
        """The run's directory as the resource sees it (inputs, list files, outputs, logs)."""

    def outputs_dir(self, run: "FanoutRun") -> str:
        """Where tasks write their output directories, as the resource sees it."""
        return f"{run.remote_dir}/out" if run.remote_dir else run.output

    @abc.abstractmethod
    def glob(self, pattern: str) -> list[str]:
        """Files matching a glob pattern on the resource, sorted."""

    def input_name(self, path: str) -> str:
        """How an input ``glob`` found is shown to the user: ``RESOURCE:/path``."""
        return f"{self.resource.name}:{path}"

    @abc.abstractmethod
    def is_file(self, path: str) -> bool:
        """Does this regular file exist on the resource?"""

    @abc.abstractmethod
    def upload(self, files: dict[str, str], into: str) -> None:
        """Copy local files to the resource: ``{name relative to into: local path}``."""

    # -- the run ---------------------------------------------------------------------------
    @abc.abstractmethod
    def submit(self, run: "FanoutRun", tasks: list[int]) -> "Submission":
        """Start these tasks (clearing their previous ``exit`` files first)."""

    @abc.abstractmethod
    def poll(self, run: "FanoutRun") -> dict[int, TaskStatus]:
        """The state of every task of the run's latest submission of it."""

    @abc.abstractmethod
    def fetch(self, run: "FanoutRun", tasks: list[int]) -> None:
        """Bring these tasks' output directories to ``run.output`` (no-op where they already are)."""

    @abc.abstractmethod
    def cancel(self, run: "FanoutRun") -> None:
        """Cancel whatever of the run still runs."""

    def check_python(self) -> None:
        """Raise ``BackendError`` when the task interpreter cannot run (checked before submitting)."""

    def close(self) -> None:
        """Release connections."""


# -- tar streams (staging in, outputs back) ---------------------------------------------------
def tar_bytes(files: dict[str, str]) -> bytes:
    """A tar archive of local files under the given names."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, local in files.items():
            tar.add(local, arcname=name, recursive=False)
    return buf.getvalue()


def extract_tar(data: bytes, dest: Path) -> None:
    """Extract a tar archive of task directories into ``dest``: regular files and directories only,
    never outside ``dest`` (the archive comes from a remote machine)."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar.getmembers():
            target = (root / m.name).resolve()
            if not (target == root or root in target.parents) or not (m.isfile() or m.isdir()):
                raise BackendError(f"refusing a suspicious entry {m.name!r} in the outputs archive")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - Python < 3.10.12; members were checked above
            tar.extractall(root)
    os.chmod(root, 0o700)
