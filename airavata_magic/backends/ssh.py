"""The ``ssh`` backend: a kernel on a plain SSH host (a workstation, no scheduler).

The kernel is started detached (``nohup`` + a new session) by ``kernels/ssh_kernel.sh``, which runs
the profile's setup lines and then ``kernels/remote_launcher.py``; it binds the host's loopback
and is reached through forwards over the resource's one SSH connection. The runtime's "job id" is
the launcher's pid. A walltime, if given, is enforced by the launcher.
"""
from __future__ import annotations

import re
import secrets
import shlex
import time
from typing import Callable

from ..errors import BackendError, InvalidArgument
from ..runtime import Observation, Runtime, RuntimeSpec, RuntimeState
from .base import Submission
from .scripts import parse_sections, render_ssh_script
from .ssh_launched import SshLaunchedBackend

_UNSUPPORTED = ("gpus", "partition", "account", "node", "image")


def _check_spec(spec: RuntimeSpec, resource: str) -> None:
    bad = [f"--{k}" for k in _UNSUPPORTED if getattr(spec, k)]
    if bad:
        raise InvalidArgument(
            f"{resource} is a plain SSH host (kind ssh) with no scheduler: {', '.join(bad)} cannot be honoured; "
            "drop them or use a slurm resource")


class SshBackend(SshLaunchedBackend):
    """Kernels started over SSH on one host, without a scheduler."""

    kind = "ssh"
    poll_interval = 0.1
    observe_cap = 3.0

    def request(self, runtime: Runtime) -> Submission:
        _check_spec(runtime.spec, self.resource.name)
        rundir = self.new_run_dir(runtime)
        extra = ["--ip", "127.0.0.1", "--detach"]
        if runtime.spec.walltime:
            extra += ["--walltime", str(runtime.spec.walltime)]
        script = render_ssh_script(setup=self.settings.get("setup", []) + (runtime.spec.setup or []),
                                   command=self.launcher_argv(runtime, rundir, *extra))
        # The channel closes as soon as `echo $!` is done: the kernel's streams go to job.log.
        rc, out, err = self.run(self.in_new_run_dir(
            rundir, "run.sh", "{ nohup sh run.sh > job.log 2>&1 < /dev/null & } && echo $!"), stdin=script)
        pid = out.strip().splitlines()[-1] if out.strip() else ""
        if rc != 0 or not pid.isdigit():
            raise BackendError(f"cannot start a kernel on {self.resource.name}: {(err or out).strip()[-300:] or rc}")
        self.invalidate()
        ends_at = time.time() + runtime.spec.walltime * 60 if runtime.spec.walltime else None
        return Submission(pid, RuntimeState.STARTING, {"run_dir": rundir}, node=self.target.host, ends_at=ends_at)

    def recorded(self, runtime: Runtime) -> str:
        ok = runtime.job_id and runtime.job_id.isdigit() and "run_dir" in runtime.backend_state
        return "" if ok else "no process id recorded"

    def query(self, runtimes: list[Runtime]) -> dict[str, Observation]:
        b = "@@" + secrets.token_hex(6)
        parts = []
        for i, r in enumerate(runtimes):
            rd = shlex.quote(self.rundir(r))
            parts += [
                f"echo {b} state{i}",
                f"if [ -f {rd}/exit ]; then echo exit; cat {rd}/exit; "
                f"elif kill -0 {shlex.quote(r.job_id or '')} 2>/dev/null; then echo alive; else echo gone; fi",
                f"echo {b} log{i}", self.log_tail_command(r),
            ]
        _, out, _ = self.run("; ".join(parts) + "; true", timeout=60)
        sections = parse_sections(out, b)
        obs = {}
        for i, r in enumerate(runtimes):
            lines = sections.get(f"state{i}", "").split("\n")
            word, detail = lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")
            log = sections.get(f"log{i}", "")
            # Records of older versions kept the walltime end in backend_state.
            ends_at = r.ends_at or r.backend_state.get("ends_at")
            if word == "alive":
                keep = RuntimeState.READY if r.state == RuntimeState.READY else RuntimeState.STARTING
                obs[r.name] = Observation(keep, "", node=self.target.host, log_tail=log, ends_at=ends_at)
            elif word == "exit":
                m = re.match(r"^(-?\d+)\s*(.*)$", detail)
                code, why = (int(m.group(1)), m.group(2)) if m else (1, detail)
                obs[r.name] = self.ended(r, f"kernel process {r.job_id} ended: {why}", log, expired=code == 124,
                                         stopped=code == 0 and "stopped on request" in why)
            else:
                obs[r.name] = self.ended(r, f"kernel process {r.job_id} is gone (killed?)", log)
        return obs

    def stop(self, runtime: Runtime) -> None:
        if runtime.job_id and runtime.job_id.isdigit() and "run_dir" in runtime.backend_state:
            rd = shlex.quote(self.rundir(runtime))
            # The flag covers a launcher that is busy; the signal makes it act at once.
            self.run(f"touch -- {rd}/stop 2>/dev/null; kill -TERM {shlex.quote(runtime.job_id)} 2>/dev/null; true")
        self.close_tunnels(runtime)
        self.invalidate()

    # -- batch commands (``airavata-magic compute execute``) -----------------------------
    def run_batch(self, command: str, spec: RuntimeSpec, on_stdout: Callable[[bytes], None],
                  on_stderr: Callable[[bytes], None]) -> int:
        """Run ``command`` on the host (setup lines first), streaming its output; its exit code."""
        if not command.strip():
            raise InvalidArgument("the command is empty")
        if spec.cpus or spec.memory:
            raise InvalidArgument(f"{self.resource.name} is a plain SSH host: --cpus/--memory cannot be honoured")
        _check_spec(spec, self.resource.name)
        argv = ["bash", "-c", command]
        if spec.walltime:
            argv = ["timeout", f"{spec.walltime * 60}", *argv]
        script = "\n".join([*self.settings.get("setup", []), "exec " + " ".join(shlex.quote(a) for a in argv)])
        return self.conn.stream(script, on_stdout, on_stderr)
