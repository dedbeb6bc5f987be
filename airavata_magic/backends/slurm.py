"""The ``slurm`` backend: a kernel in a batch job submitted with sbatch over SSH to a login node.

The job script (``kernels/slurm_job.sh``) runs the profile's setup lines, then
``kernels/remote_launcher.py``, which keeps one IPython kernel running in the allocation and
restarts it on request. Job states come from one ``squeue`` (plus ``sacct`` when present) per
query for all runtimes of the resource, with back-off (``SshLaunchedBackend.observe``).
"""
from __future__ import annotations

import re
import secrets
import shlex
import time
from typing import TYPE_CHECKING, Any, Callable

from .. import checks as validators
from ..errors import BackendError, InvalidArgument
from ..runtime import Observation, Runtime, RuntimeSpec, RuntimeState
from .base import Submission
from .scripts import parse_sections, render_job_script, sbatch_options
from .ssh_launched import SSH_KEYS, SshLaunchedBackend

if TYPE_CHECKING:
    from ..profile import Resource

QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED", "STOPPED",
                 "RESIZING", "SIGNALING", "STAGE_OUT"}
RUNNING_STATES = {"RUNNING", "CONFIGURING"}
FAILED_STATES = {"FAILED", "NODE_FAIL", "BOOT_FAIL", "OUT_OF_MEMORY", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT", "REVOKED"}
_JOB_ID = re.compile(r"^\d+(_\d+)?$")


def parse_time_left(text: str) -> float | None:
    """squeue's ``%L`` (``[days-][hours:]minutes:seconds``) in seconds; None when unlimited/unknown."""
    m = re.match(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$", text.strip())
    if not m:
        return None
    d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


def observation_of(runtime: Runtime, state: str, reason: str, node: str, time_left: str, log: str,
                   now: float) -> Observation:
    """Map one Slurm job state to what a runtime is (a pure function, unit-tested)."""
    state = state.split()[0].rstrip("+") if state else ""
    reason = "" if reason in ("None", "(null)") else reason
    node = node if node and node not in ("(null)", "None") else None
    job = f"Slurm job {runtime.job_id}"
    if state in QUEUED_STATES:
        return Observation(RuntimeState.QUEUED, reason or state.lower(), node=node, log_tail=log)
    if state in RUNNING_STATES:
        left = parse_time_left(time_left)
        keep = RuntimeState.READY if runtime.state == RuntimeState.READY else RuntimeState.STARTING
        return Observation(keep, "", node=node, log_tail=log, ends_at=None if left is None else now + left)
    if state == "COMPLETING":  # the final state follows within seconds
        keep = runtime.state if not runtime.state.terminal else RuntimeState.STARTING
        return Observation(keep, "job is ending", node=node, log_tail=log)
    if state == "TIMEOUT":
        return Observation(RuntimeState.EXPIRED, f"walltime reached ({job} TIMEOUT)", node=node, log_tail=log)
    if state == "CANCELLED":
        return Observation(RuntimeState.STOPPED, f"{job} was cancelled outside airavata-magic (scancel)",
                           node=node, log_tail=log)
    if state == "COMPLETED":
        return SshLaunchedBackend.ended(runtime, f"{job} ended: its kernel exited", log)
    if state in FAILED_STATES:
        why = f"{job} {state}" + (f" ({reason})" if reason else "")
        if state == "FAILED" and runtime.state != RuntimeState.READY:
            why += ": the kernel could not start; see the log tail"
        return SshLaunchedBackend.ended(runtime, why, log)
    if not state:
        return SshLaunchedBackend.ended(runtime, f"Slurm no longer knows {job}", log)
    return Observation(RuntimeState.QUEUED if runtime.state in (RuntimeState.REQUESTED, RuntimeState.QUEUED)
                       else runtime.state, f"Slurm state {state}", node=node, log_tail=log)


class SlurmBackend(SshLaunchedBackend):
    """Kernels in Slurm batch jobs, submitted over SSH to the resource's login node."""

    kind = "slurm"
    profile_keys = {**SSH_KEYS, "partition": validators.text, "account": validators.text}
    required_keys = ("host",)
    # The manager's wait loop grows this itself; observe() answers from a cache while fresh.
    poll_interval = 0.1

    def __init__(self, resource: "Resource", runtime_dir: Callable[[str], Any]) -> None:
        super().__init__(resource, runtime_dir)
        self._estimates: dict[str, str] = {}

    # -- the job script ------------------------------------------------------------------
    def options(self, spec: RuntimeSpec) -> list[tuple[str, str]]:
        return sbatch_options(
            partition=spec.partition or self.settings.get("partition"),
            account=spec.account or self.settings.get("account"),
            walltime=spec.walltime, cpus=spec.cpus, memory=spec.memory, gpus=spec.gpus, node=spec.node,
        )

    def job_script(self, runtime: Runtime, rundir: str) -> str:
        """The kernel job for a runtime whose files live in ``rundir``."""
        return render_job_script(
            job_name=runtime.name, output=f"{rundir}/job.log", options=self.options(runtime.spec),
            setup=self.settings.get("setup", []) + (runtime.spec.setup or []), command=self.launcher_argv(runtime, rundir, "--ip", "auto"),
        )

    def _submit(self, script: str, rundir: str, what: str) -> str:
        rc, out, err = self.run(self.in_new_run_dir(rundir, "job.sh", "sbatch --parsable job.sh"), stdin=script)
        if rc != 0:
            msg = " ".join((err or out).strip().splitlines()[-2:]) or f"exit code {rc}"
            raise BackendError(f"sbatch refused {what} on {self.resource.name}: {msg}")
        job_id = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
        if not _JOB_ID.match(job_id):
            raise BackendError(f"sbatch on {self.resource.name} gave no job id (output: {out.strip()[-200:]!r})")
        return job_id

    # -- Backend -------------------------------------------------------------------------
    def request(self, runtime: Runtime) -> Submission:
        rundir = self.new_run_dir(runtime)
        job_id = self._submit(self.job_script(runtime, rundir), rundir, f"runtime {runtime.name!r}")
        self.invalidate()
        return Submission(job_id, RuntimeState.QUEUED, {"run_dir": rundir})

    def recorded(self, runtime: Runtime) -> str:
        return "" if runtime.job_id and _JOB_ID.match(runtime.job_id) else "no Slurm job id recorded"

    def query(self, runtimes: list[Runtime]) -> dict[str, Observation]:
        """One remote command for all: squeue, sacct when present, and each job's log tail."""
        b = "@@" + secrets.token_hex(6)
        ids = shlex.quote(",".join(r.job_id for r in runtimes if r.job_id))  # digits only, quoted anyway
        parts = [
            f"squeue -h -a --states=all -j {ids} -o '%i|%T|%r|%N|%L' 2>/dev/null",
            f"echo {b} sacct",
            f"command -v sacct >/dev/null 2>&1 && sacct -n -P -X -j {ids} -o JobIDRaw,State,Reason,NodeList 2>/dev/null",
        ]
        for i, r in enumerate(runtimes):
            if "run_dir" in r.backend_state:
                parts += [f"echo {b} log{i}", self.log_tail_command(r)]
        _, out, _ = self.run("; ".join(parts) + "; true", timeout=60)
        sections = parse_sections(out, b)
        rows: dict[str, list[str]] = {}
        for line in sections.get("sacct", "").splitlines():
            f = line.split("|")
            if len(f) >= 4:
                rows[f[0]] = [f[0], f[1], f[2], f[3], ""]
        for line in sections.get("", "").splitlines():  # squeue is fresher than sacct: it wins
            f = line.split("|")
            if len(f) >= 5:
                rows[f[0]] = f[:5]
        now = time.time()
        obs = {}
        for i, r in enumerate(runtimes):
            row = rows.get(r.job_id or "", ["", "", "", "", ""])
            obs[r.name] = observation_of(r, row[1], row[2], row[3], row[4], sections.get(f"log{i}", ""), now)
        return obs

    def stop(self, runtime: Runtime) -> None:
        if runtime.job_id and _JOB_ID.match(runtime.job_id):
            self.run(["scancel", runtime.job_id])  # quiet when the job is already gone
        self.close_tunnels(runtime)
        self.invalidate()

    def check_remote(self, conn) -> str | None:
        rc, _, _ = conn.run("command -v sbatch && command -v squeue", timeout=30)
        if rc != 0:
            return f"no sbatch/squeue on {self.target.label}: is host a Slurm login node?"
        return None

    def estimate_start(self, runtime: Runtime) -> float | None:
        """Seconds until the job would start, from ``sbatch --test-only``; ``estimate_reason`` says why."""
        rundir = f"{self.work_dir()}/runtimes/estimate"
        b = "@@" + secrets.token_hex(6)
        cmd = (
            "out=$(sbatch --test-only 2>&1); rc=$?; printf '%s\\n' \"$out\"; "
            f"echo {b} now; date +%s; "
            "t=$(printf '%s\\n' \"$out\" | sed -n 's/.* to start at \\([^ ]*\\) .*/\\1/p' | head -n 1); "
            f"if [ -n \"$t\" ]; then echo {b} start; date -d \"$t\" +%s; fi; exit $rc"
        )
        rc, out, err = self.run(cmd, stdin=self.job_script(runtime, rundir))
        sections = parse_sections(out, b)
        message = " ".join(sections.get("", "").strip().splitlines()[-2:])
        if rc != 0:
            raise BackendError(f"{self.resource.name}: this job could not start here: {message or err.strip()}")
        try:
            now, start = int(sections["now"].strip()), int(sections["start"].strip())
        except (KeyError, ValueError):
            self._estimates[runtime.name] = f"sbatch --test-only gave no start time ({message})"
            return None
        m = re.search(r"to start at \S+ (using .*)", message)
        self._estimates[runtime.name] = (f"starts in {max(0, start - now)} s" + (f", {m.group(1)}" if m else ""))
        return float(max(0, start - now))

    def estimate_reason(self, runtime: Runtime) -> str:
        """A short 'why' for the last ``estimate_start`` of this runtime."""
        return self._estimates.get(runtime.name, "")

    # -- batch commands (``airavata-magic compute execute``) -----------------------------
    def run_batch(self, command: str, spec: RuntimeSpec, on_stdout: Callable[[bytes], None],
                  on_stderr: Callable[[bytes], None], poll: float = 0.5) -> int:
        """Submit ``command`` as a batch job, stream its output as it is written, return its exit code."""
        if not command.strip():
            raise InvalidArgument("the command is empty")
        rundir = f"{self.work_dir()}/runtimes/compute-{secrets.token_hex(4)}"
        script = render_job_script(job_name="airavata-compute", output=f"{rundir}/job.log", options=self.options(spec),
                                   setup=self.settings.get("setup", []), command=["bash", "-c", command])
        job_id = self._submit(script, rundir, "the command")
        on_stderr(f"[airavata-magic] submitted Slurm job {job_id} on {self.resource.name}\n".encode())
        log = f"{rundir}/job.log"
        offset = 0
        try:
            with self.conn.sftp() as sftp:
                while True:
                    _, out, _ = self.run(["squeue", "-h", "-a", "--states=all", "-j", job_id, "-o", "%T"])
                    state = out.strip().split()[0] if out.strip() else ""
                    try:
                        with sftp.open(log, "rb") as f:
                            f.seek(offset)
                            chunk = f.read()
                    except FileNotFoundError:
                        chunk = b""
                    if chunk:
                        offset += len(chunk)
                        on_stdout(chunk)
                    if state not in QUEUED_STATES | RUNNING_STATES | {"COMPLETING"}:
                        break
                    time.sleep(poll)
        except KeyboardInterrupt:
            self.run(["scancel", job_id])
            on_stderr(f"[airavata-magic] interrupted: cancelled Slurm job {job_id}\n".encode())
            return 130
        _, out, _ = self.run(["scontrol", "show", "job", "-o", job_id])
        m = re.search(r"\bExitCode=(\d+):(\d+)", out)
        code = int(m.group(1)) if m else 1
        if state not in ("COMPLETED", "FAILED") or (state == "FAILED" and code == 0):
            # TIMEOUT, CANCELLED, NODE_FAIL...: not the command's own exit; say so, and never exit 0.
            on_stderr(f"[airavata-magic] Slurm job {job_id} ended {state or 'in an unknown state'}\n".encode())
            code = code or 1
        return code


__all__ = ["SlurmBackend", "observation_of", "parse_time_left"]
