"""Fan-out on ``local``: a detached process pool (``fanout/pool.py``) on this machine.

Tasks write straight into the run's output directory, so nothing is staged or fetched.
"""
from __future__ import annotations

import glob as _glob
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import paths
from .engine import FAILED, PENDING, RUNNING, STDERR_TAIL, Engine, TaskStatus, state_from_exit
from .record import Submission, list_file_text

if TYPE_CHECKING:
    from .record import FanoutRun

_children: dict[int, subprocess.Popen] = {}  # pools started by this process (reaped here)


def _alive(pid: int) -> bool:
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _tail(path: Path, n: int = STDERR_TAIL) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class LocalEngine(Engine):
    """Processes on this machine, at most ``parallel`` at once."""

    kind = "local"
    needs_staging = False

    def run_dir(self, run_id: str) -> str:
        return str(paths.private_dir(paths.home() / "fanout" / run_id))

    def outputs_dir(self, run: "FanoutRun") -> str:
        return run.output

    def glob(self, pattern: str) -> list[str]:
        return sorted(os.path.abspath(p) for p in _glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p))

    def is_file(self, path: str) -> bool:
        return os.path.isfile(os.path.expanduser(path))

    def upload(self, files: dict[str, str], into: str) -> None:  # pragma: no cover - never needed
        raise NotImplementedError("local inputs are used in place")

    def submit(self, run: "FanoutRun", tasks: list[int]) -> Submission:
        out = Path(run.output)
        for t in tasks:  # a retried task must not look finished before it runs again
            (run.task_dir(t) / "exit").unlink(missing_ok=True)
            (run.task_dir(t) / "stderr.log").unlink(missing_ok=True)
        listing = Path(run.remote_dir or self.run_dir(run.run_id)) / f"list-{len(run.submissions)}.tsv"
        paths.write_private(listing, list_file_text([(t, run.inputs[t]) for t in tasks]), fsync=False)
        proc = subprocess.Popen(
            [sys.executable, "-m", "airavata_magic.fanout.pool", str(listing), str(out), str(run.parallel),
             sys.executable, run.algorithm],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _children[proc.pid] = proc
        return Submission(tasks=list(tasks), job_ids=[str(proc.pid)])

    def poll(self, run: "FanoutRun") -> dict[int, TaskStatus]:
        latest: dict[int, Submission] = {}
        for s in run.submissions:
            for t in s.tasks:
                latest[t] = s
        result = {}
        for task, sub in latest.items():
            d = run.task_dir(task)
            try:
                text = (d / "exit").read_text()
            except OSError:
                text = None
            st = state_from_exit(task, text, _tail(d / "stderr.log") if text and text.strip() != "0" else "")
            if st is None:
                alive = any(_alive(int(p)) for p in sub.job_ids if p.isdigit())
                if not alive:
                    st = TaskStatus(task, FAILED, None, "the worker pool ended before this task finished",
                                    _tail(d / "stderr.log"))
                else:
                    st = TaskStatus(task, RUNNING if (d / "stderr.log").exists() else PENDING)
            result[task] = st
        return result

    def fetch(self, run: "FanoutRun", tasks: list[int]) -> None:
        return None  # already here

    def cancel(self, run: "FanoutRun") -> None:
        import signal

        for s in run.submissions:
            for p in s.job_ids:
                if p.isdigit() and _alive(int(p)):
                    try:
                        os.killpg(int(p), signal.SIGTERM)  # the pool and its tasks share the session
                    except OSError:
                        pass
