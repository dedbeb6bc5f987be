"""Where training tasks run: one scheduler per resource kind, each a real queue.

``local``: a process of its own session on this machine; ``slurm``: an sbatch job submitted over
the resource's pooled SSH connection; ``kubernetes``: a Job through the backend's API client
(``kubernetes.py``). A scheduler submits a staged task folder, observes jobs
(its word on a job's fate wins over the task's own files), reads a task's small files, cancels.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import BackendError, InvalidArgument

# What a scheduler says of a job, before the task's own status.json is consulted.
PENDING, RUNNING, ENDED, CANCELLED, FAILED = "pending", "running", "ended", "cancelled", "failed"


@dataclass
class JobView:
    """A scheduler's view of one job: one of the five words above, and why."""

    phase: str
    reason: str = ""


class Scheduler(Protocol):
    kind: str

    def submit(self, task_id: str, staged: Path, spec: Any, links: dict[str, str]) -> tuple[str, str]:
        """Start the staged task, with ``links`` (name in the task folder -> a file already on the
        resource) made first; returns (job id, task folder where it runs)."""

    def observe(self, jobs: dict[str, str]) -> dict[str, JobView]:
        """{task id: job id} -> {task id: JobView}."""

    def read(self, task_dir: str, name: str, max_bytes: int | None = None) -> bytes | None:
        """A file of a task folder, None when absent."""

    def cancel(self, job_id: str) -> None:
        """Stop the job (quietly when it already ended)."""


# -- local ------------------------------------------------------------------------------------
def _proc_state(pid: int) -> str | None:
    """The process state letter from /proc (None when gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def read_file(task_dir: str, name: str, max_bytes: int | None = None) -> bytes | None:
    """A file of a task folder on this machine (its last ``max_bytes``), None when absent."""
    try:
        with open(Path(task_dir) / name, "rb") as f:
            if max_bytes is not None:
                f.seek(max(0, os.fstat(f.fileno()).st_size - max_bytes))
            return f.read()
    except FileNotFoundError:
        return None


class LocalScheduler:
    """Tasks as processes on this machine, each in its own session (killed as a group)."""

    kind = "local"
    _children: dict[int, subprocess.Popen] = {}  # reaped by poll(); shared by every instance

    def submit(self, task_id: str, staged: Path, spec: Any, links: dict[str, str]) -> tuple[str, str]:
        for name, target in links.items():
            os.symlink(target, staged / name)
        log = open(staged / "job.log", "ab")
        try:
            proc = subprocess.Popen([sys.executable, str(staged / "train.py"), str(staged)], cwd=staged,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        finally:
            log.close()
        self._children[proc.pid] = proc
        return str(proc.pid), str(staged)

    def observe(self, jobs: dict[str, str]) -> dict[str, JobView]:
        out = {}
        for task_id, job in jobs.items():
            pid = int(job)
            proc = self._children.get(pid)
            if proc is not None:
                code = proc.poll()
                if code is None:
                    out[task_id] = JobView(RUNNING)
                elif code < 0:  # whoever sent it: a cancel through us is known from the task's record
                    out[task_id] = JobView(FAILED, f"the process was killed by signal {-code}")
                else:
                    out[task_id] = JobView(ENDED, f"exit code {code}")
                continue
            state = _proc_state(pid)
            out[task_id] = JobView(RUNNING) if state not in (None, "Z", "X") else JobView(ENDED, "process ended")
        return out

    def read(self, task_dir: str, name: str, max_bytes: int | None = None) -> bytes | None:
        return read_file(task_dir, name, max_bytes)

    def cancel(self, job_id: str) -> None:
        pid = int(job_id)
        if _proc_state(pid) in (None, "Z", "X"):
            return
        try:
            os.killpg(pid, signal.SIGTERM)  # the task's own session: its workers go too
        except ProcessLookupError:
            pass


# -- slurm ------------------------------------------------------------------------------------
_SLURM_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED", "CONFIGURING", "RESIZING"}
_SLURM_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def slurm_view(state: str, reason: str) -> JobView:
    """Map squeue/sacct's state to a JobView (a pure function)."""
    state = state.split()[0].rstrip("+") if state else ""
    reason = "" if reason in ("None", "(null)") else reason
    if state in _SLURM_PENDING:
        return JobView(PENDING, reason or state.lower())
    if state in _SLURM_RUNNING:
        return JobView(RUNNING)
    if state == "COMPLETED":
        return JobView(ENDED)
    if state == "CANCELLED":
        return JobView(CANCELLED, "cancelled (scancel)")
    if not state:
        return JobView(ENDED, "Slurm no longer knows the job")
    return JobView(FAILED, f"Slurm job {state}" + (f" ({reason})" if reason else ""))


class SlurmScheduler:
    """Tasks as sbatch jobs on a ``slurm`` resource, through its pooled SSH connection."""

    kind = "slurm"

    def __init__(self, backend: Any) -> None:
        self.backend = backend  # a SlurmBackend: its connection, work_dir, options and python

    def submit(self, task_id: str, staged: Path, spec: Any, links: dict[str, str]) -> tuple[str, str]:
        from ..backends.scripts import render_job_script

        b = self.backend
        remote = f"{b.work_dir()}/tasks/{task_id}"
        q = shlex.quote
        steps = [f"umask 077 && mkdir -p -- {q(remote)}/package {q(remote)}/data"]
        for name, target in links.items():  # data already on the cluster: checked and linked, not copied
            steps.append(f"{{ test -f {q(target)} && test -r {q(target)} || "
                         f"{{ echo {q(target + ' is not a readable file on ' + b.resource.name)} >&2; exit 3; }}; }}")
            steps.append(f"ln -s -- {q(target)} {q(remote + '/' + name)}")
        rc, _, err = b.run(" && ".join(steps))
        if rc != 0:
            b.run(f"rm -rf -- {q(remote)}")  # nothing half-made left behind
            raise BackendError(f"{b.resource.name}: cannot prepare task {task_id}: {err.strip()[-200:]}")
        with b.conn.sftp() as sftp:
            for path in sorted(staged.rglob("*")):
                if path.is_file() and path.name != "job.log":
                    sftp.put(str(path), f"{remote}/{path.relative_to(staged).as_posix()}")
            script = render_job_script(job_name=f"airavata-{task_id}", output=f"{remote}/job.log",
                                       options=b.options(spec), setup=b.settings.get("setup", []),
                                       command=[b.python, f"{remote}/train.py", remote])
            with sftp.open(f"{remote}/job.sh", "wb") as f:
                f.chmod(0o700)
                f.write(script.encode())
        rc, out, err = b.run(f"cd -- {shlex.quote(remote)} && sbatch --parsable job.sh")
        job = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
        if rc != 0 or not job.isdigit():
            raise BackendError(f"sbatch refused task {task_id} on {b.resource.name}: "
                               f"{(err or out).strip().splitlines()[-1:] or ['exit code ' + str(rc)]}")
        return job, remote

    def observe(self, jobs: dict[str, str]) -> dict[str, JobView]:
        if not jobs:
            return {}
        ids = ",".join(j for j in jobs.values() if j.isdigit())
        q = shlex.quote(ids)
        _, out, _ = self.backend.run(
            f"squeue -h -a --states=all -j {q} -o '%i|%T|%r' 2>/dev/null; echo @@sacct; "
            f"command -v sacct >/dev/null && sacct -n -P -X -j {q} -o JobIDRaw,State,Reason 2>/dev/null; true")
        squeue, _, sacct = out.partition("@@sacct")
        rows: dict[str, tuple[str, str]] = {}
        for text in (sacct, squeue):  # squeue is fresher: it overwrites
            for line in text.strip().splitlines():
                f = line.split("|")
                if len(f) >= 3:
                    rows[f[0]] = (f[1], f[2])
        return {tid: slurm_view(*rows.get(job, ("", ""))) for tid, job in jobs.items()}

    def read(self, task_dir: str, name: str, max_bytes: int | None = None) -> bytes | None:
        return self.backend.conn.read_file(f"{task_dir}/{name}", max_bytes)

    def cancel(self, job_id: str) -> None:
        if job_id.isdigit():
            self.backend.run(["scancel", job_id])


def scheduler_for(resource: Any, profile: str | None = None) -> Scheduler:
    """The scheduler of a profile resource (chosen once, by its kind)."""
    if resource.kind == "local":
        return LocalScheduler()
    if resource.kind == "slurm":
        from ..backends import backend_class

        return SlurmScheduler(backend_class("slurm")(resource, lambda name: None))
    if resource.kind == "kubernetes":
        from .kubernetes import KubernetesScheduler  # one Job per task (hub/kubernetes.py)

        return KubernetesScheduler(resource, profile)
    raise InvalidArgument(f"training tasks run on local, slurm and kubernetes resources; {resource.name} is {resource.kind}")
