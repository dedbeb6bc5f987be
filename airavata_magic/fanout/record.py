"""The record of a fan-out run: what ran where, one owner (``RunStore``), kept private on disk.

A run is a fixed list of tasks (task index -> input). Every submission (the first one, and each
``--retry``) runs some of those tasks; a task's outputs always land in the same directory,
``<outputs>/<task:05d>/``, so a retried task simply replaces its earlier, failed outputs.

Each task directory ends up with the algorithm's standard results (``filtered.npy``,
``info_df.pkl``, ``header.pkl``) and, written by our task wrapper, ``stdout.log``, ``stderr.log``
and ``exit`` (the algorithm's exit code). Task state is read from those files and the scheduler.
"""
from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import InvalidArgument

RESULT_FILES = ("filtered.npy", "info_df.pkl", "header.pkl")
_RUN_ID = re.compile(r"^fo-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")


def new_run_id(prefix: str = "fo") -> str:
    """A readable, unique run id, e.g. ``fo-20261130-091502-3fa2``."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def task_dir_name(task: int) -> str:
    return f"{task:05d}"


def list_file_text(tasks: list[tuple[int, str]]) -> str:
    """The list file an array reads: line ``i+1`` is ``TASK<TAB>INPUT`` for array index ``i``."""
    for _, path in tasks:
        if "\n" in path or "\t" in path or "\r" in path:
            raise InvalidArgument(f"input path {path!r} contains a tab or newline; rename it")
    return "".join(f"{t}\t{p}\n" for t, p in tasks)


@dataclass
class Submission:
    """One submission of some of a run's tasks (the first run, or a retry)."""

    tasks: list[int]
    job_ids: list[str] = field(default_factory=list)  # Slurm array ids (several when split); k8s Job; local pid
    chunk: int = 0  # tasks per array job when an array was split (MaxArraySize); 0 = not split
    at: float = field(default_factory=time.time)

    def chunks(self) -> list[tuple[str, list[int]]]:
        """(job id, the tasks it runs in array-index order) for each job of this submission."""
        size = self.chunk or max(1, len(self.tasks))
        return [(jid, self.tasks[i * size:(i + 1) * size]) for i, jid in enumerate(self.job_ids)]


@dataclass
class FanoutRun:
    """Everything needed to watch, gather and retry a run later, from another process too."""

    run_id: str
    algorithm: str  # as the resource sees it
    algorithm_source: str  # as the user gave it
    inputs: list[str]  # task index -> input path as the resource sees it
    names: list[str]  # task index -> the input's name shown to the user (its original path)
    resource: str
    kind: str
    parallel: int
    output: str  # local directory the task directories are brought back to
    remote_dir: str = ""  # the run's directory on the resource (slurm, kubernetes)
    profile: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    staged: dict[str, str] = field(default_factory=dict)  # resource path -> local original (re-staged on retry)
    submissions: list[Submission] = field(default_factory=list)
    created: float = field(default_factory=time.time)

    @property
    def n(self) -> int:
        return len(self.inputs)

    def task_dir(self, task: int) -> Path:
        """The local directory of one task's outputs."""
        return Path(self.output) / task_dir_name(task)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FanoutRun":
        d = dict(d)
        d["submissions"] = [Submission(**s) for s in d.get("submissions", [])]
        return cls(**d)


class RunStore:
    """Fan-out run records under ``$AIRAVATA_MAGIC_HOME/fanout/`` (0700 dir, 0600 files)."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        return paths.private_dir(self._root or paths.home() / "fanout")

    def path(self, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise InvalidArgument(f"{run_id!r} is not a fan-out run id (they look like fo-20261130-091502-3fa2)")
        return self.root / f"{run_id}.json"

    def save(self, run: FanoutRun) -> None:
        paths.write_private(self.path(run.run_id), json.dumps(run.to_json(), indent=1))

    def load(self, run_id: str) -> FanoutRun:
        p = self.path(run_id)
        if not p.is_file():
            known = ", ".join(sorted(x.stem for x in self.root.glob("fo-*.json"))[-3:]) or "none yet"
            raise InvalidArgument(f"no fan-out run {run_id!r} (recent: {known})")
        return FanoutRun.from_json(json.loads(p.read_text(encoding="utf-8")))

    def all(self) -> list[FanoutRun]:
        out = []
        for p in sorted(self.root.glob("fo-*.json")):
            try:
                out.append(FanoutRun.from_json(json.loads(p.read_text(encoding="utf-8"))))
            except (ValueError, TypeError, OSError):
                continue  # a damaged record is not a reason to hide the others
        return out
