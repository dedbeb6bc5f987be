"""``kind: local``: a kernel in a separate process on this machine (``LocalProcessBackend``).

Not to be confused with the notebook's own kernel (the runtime name ``local``). No cluster
needed. The kernel runs in a new session (process group), so it outlives a restart of the
notebook kernel and ``%attach_runtime`` finds it again by pid. Ports bind 127.0.0.1 only; the
connection file is 0600 in the runtime's private directory. A walltime is reported like a
cluster's (``ends_at``; the manager stops the process when it passes). The kernel is started
through ``kernel_guard.py``, which ends it once no notebook has held it for the idle limit.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import checks, paths
from ..errors import BackendError, InvalidArgument
from ..runtime import Observation, Runtime, RuntimeState, idle_limit, process_start
from .base import AuthResult, Backend, ConnectionInfo, PORT_NAMES, Submission



def free_loopback_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log file, or '' when there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


_proc_start_time = process_start  # the kernel's start time in clock ticks: guards against pid reuse
GUARD = Path(__file__).with_name("kernel_guard.py")


class LocalProcessBackend(Backend):
    """Kernels in separate processes on this machine (the profile's ``kind: local``)."""

    kind = "local"
    profile_keys = {"python": checks.path}
    poll_interval = 0.05

    def __init__(self, resource, runtime_dir) -> None:
        super().__init__(resource, runtime_dir)
        self._children: dict[int, subprocess.Popen] = {}

    def _python(self) -> str:
        return os.path.expanduser(self.resource.settings.get("python") or sys.executable)

    def request(self, runtime: Runtime) -> Submission:
        if runtime.spec.gpus:
            raise InvalidArgument("the local resource has no GPUs to give; drop --gpus or use a cluster resource")
        if runtime.spec.partition or runtime.spec.account or runtime.spec.image or runtime.spec.node:
            raise InvalidArgument("--partition, --account, --image and --node do not apply to the local resource")
        state = self._start(runtime)
        ends_at = time.time() + runtime.spec.walltime * 60 if runtime.spec.walltime else None
        return Submission(str(state["pid"]), RuntimeState.STARTING, state, node=socket.gethostname(),
                          ends_at=ends_at)

    def _start(self, runtime: Runtime) -> dict[str, Any]:
        """Start the kernel process; its backend_state (pid, start time, log, connection file)."""
        rdir = Path(self.runtime_dir(runtime.name))
        conn = rdir / "kernel.json"
        info = dict(zip(PORT_NAMES, free_loopback_ports(5)))
        info.update(ip="127.0.0.1", transport="tcp", signature_scheme="hmac-sha256",
                    key=secrets.token_hex(32), kernel_name="python3")
        paths.write_json(conn, info)
        log = rdir / "kernel.log"
        (rdir / "culled").unlink(missing_ok=True)
        argv = [self._python(), str(GUARD), "--holders", str(paths.private_dir(rdir / "holders")),
                "--idle", f"{idle_limit():g}", "--", "-f", str(conn), "--HistoryManager.enabled=False"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("JPY_")}
        env.pop("AIRAVATA_MAGIC_PROFILE", None)
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as logf:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                        cwd=os.getcwd(), env=env, start_new_session=True, close_fds=True)
        except OSError as e:
            raise BackendError(f"cannot start a local kernel with {argv[0]}: {e.strerror}") from None
        self._children[proc.pid] = proc
        return {"pid": proc.pid, "start_time": _proc_start_time(proc.pid), "log": str(log),
                "connection_file": str(conn)}

    def _alive(self, runtime: Runtime) -> bool:
        pid = runtime.backend_state.get("pid")
        if not pid:
            return False
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        return _proc_start_time(pid) == runtime.backend_state.get("start_time")

    def kernel_alive(self, runtime: Runtime, timeout: float = 1.0) -> bool | None:
        return self._alive(runtime)

    def observe(self, runtimes: list[Runtime]) -> dict[str, Observation]:
        """Process state from /proc; a walltime passed is EXPIRED (the manager then stops it)."""
        out = {}
        now = time.time()
        for rt in runtimes:
            tail = log_tail(Path(rt.backend_state.get("log", "/nonexistent")))
            culled = self._culled(rt)
            if rt.ends_at is not None and now >= rt.ends_at:
                out[rt.name] = Observation(RuntimeState.EXPIRED, "walltime reached", rt.node, tail, rt.ends_at)
            elif culled and not self._alive(rt):
                out[rt.name] = Observation(RuntimeState.STOPPED, culled, rt.node, tail, rt.ends_at)
            elif self._alive(rt):
                out[rt.name] = Observation(RuntimeState.STARTING, "", rt.node, tail, rt.ends_at)
            else:
                code = self._children[rt.backend_state["pid"]].returncode if rt.backend_state.get("pid") in self._children else None
                why = f"the kernel process exited (code {code})" if code is not None else "the kernel process is gone"
                out[rt.name] = Observation(RuntimeState.DEAD, why, rt.node, tail, rt.ends_at)
        return out

    def connection(self, runtime: Runtime) -> ConnectionInfo | None:
        try:
            info: dict[str, Any] = json.loads(Path(runtime.backend_state["connection_file"]).read_text())
        except (OSError, KeyError, ValueError):
            return None
        return info

    def interrupt(self, runtime, send_interrupt_request) -> None:
        pid = runtime.backend_state.get("pid")
        if pid and self._alive(runtime):
            os.killpg(pid, signal.SIGINT)  # the kernel leads its own process group

    def _culled(self, runtime: Runtime) -> str:
        """The guard's reason when it ended this kernel for being idle, else ''."""
        try:
            path = Path(runtime.backend_state["connection_file"]).with_name("culled")
            return str(json.loads(path.read_text())["reason"])
        except (OSError, KeyError, ValueError, TypeError):
            return ""

    def restart(self, runtime: Runtime) -> dict[str, Any] | None:
        """A fresh kernel process; returns its backend_state and its pid as the new ``job_id``."""
        self._kill(runtime)
        state = self._start(runtime)
        return {**state, "job_id": str(state["pid"])}

    def _kill(self, runtime: Runtime) -> None:
        pid = runtime.backend_state.get("pid")
        if not pid or not self._alive(runtime):
            return
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._alive(runtime):
                time.sleep(0.02)
            if not self._alive(runtime):
                break
        child = self._children.pop(pid, None)
        if child is not None:
            child.poll()

    def stop(self, runtime: Runtime) -> None:
        self._kill(runtime)

    def authenticate(self) -> AuthResult:
        python = self._python()
        try:
            r = subprocess.run([python, "-c", "import ipykernel; print(ipykernel.__version__)"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return AuthResult(self.resource.name, self.kind, False, f"cannot run {python}: {e}; set python: in the profile")
        if r.returncode != 0:
            return AuthResult(self.resource.name, self.kind, False,
                              f"{python} has no ipykernel; run: {python} -m pip install ipykernel")
        return AuthResult(self.resource.name, self.kind, True, f"ok: {python} with ipykernel {r.stdout.strip()}")
