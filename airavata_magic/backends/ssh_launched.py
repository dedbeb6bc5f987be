"""The base of SSH-launched kernels (the ``slurm`` and ``ssh`` backends): a kernel started by ``kernels/remote_launcher.py``
in a private run directory on the remote side, reached over the resource's one SSH connection.

Remote layout, under the profile's ``work_dir`` (default ``~/.airavata-magic``, mode 0700)::

    launcher-<hash>.py           the launcher, uploaded once per content
    runtimes/<name>-<random>/    one run directory per runtime (0700)
        job.sh | run.sh          the rendered script      job.log   kernel and launcher output
        kernel.json              the connection file (0600), written on the node
        restart, stop            flag files the launcher obeys       exit   its final exit code

The client reads ``kernel.json`` over SFTP and opens one forward per port through the SSH
connection. The key stays in memory here; ``Runtime.backend_state`` holds only paths and pids.
paramiko (``transport.ssh``) is imported on first connection, not with this module.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import checks as validators
from ..errors import BackendError, TransportError
from ..runtime import Observation, Runtime, RuntimeState
from ..transport.target import SshTarget, parse_jump
from .base import AuthResult, Backend, ConnectionInfo, PORT_NAMES
from .scripts import launcher_source, run_dir_name

if TYPE_CHECKING:
    from ..profile import Resource
    from ..transport.ssh import Forward, SshConnection

LOG_TAIL_BYTES = 2000
SEED_WAIT_S = 1.0  # how long connection() waits for a starting kernel to bind its ports
DEFAULT_WORK_DIR = "~/.airavata-magic"


# -- profile keys ----------------------------------------------------------------------------
def _one_line_list(value: Any) -> list[str]:
    lines = validators.text_list(value)
    for line in lines:
        if "\n" in line or "\r" in line or "\x00" in line:
            raise ValueError("each setup entry must be one shell line (use several entries)")
    return lines


def _work_dir(value: Any) -> str:
    p = validators.path(value)
    if p.startswith("~") and not (p == "~" or p.startswith("~/")):
        raise ValueError("only ~/... is expanded; write the absolute path for another user's home")
    return p


def _proxy_jump(value: Any) -> str:
    s = validators.text(value)
    parse_jump(s, "user")
    return s


def _user(value: Any) -> str:
    s = validators.text(value)
    if not re.match(r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$", s):
        raise ValueError(f"not a valid user name: {s!r}")
    return s


def _host(value: Any) -> str:
    s = validators.text(value)
    if not re.match(r"^[A-Za-z0-9._:-]{1,253}$", s) or s.startswith("-"):
        raise ValueError(f"not a valid host name or address: {s!r}")
    return s


SSH_KEYS: dict[str, Callable[[Any], Any]] = {
    "host": _host,
    "port": validators.port,
    "user": _user,
    "identity_file": validators.path,
    "known_hosts": validators.path,
    "proxy_jump": _proxy_jump,
    "python": validators.path,
    "setup": _one_line_list,
    "work_dir": _work_dir,
}


def target_of(settings: dict[str, Any]) -> SshTarget:
    """The SSH login described by a resource's settings."""
    kw: dict[str, Any] = {"host": settings["host"], "port": settings.get("port", 22)}
    for key in ("user", "identity_file", "known_hosts", "proxy_jump"):
        if settings.get(key):
            kw[key] = settings[key]
    return SshTarget(**kw)


@dataclass
class _Tunnel:
    fingerprint: tuple
    forwards: list["Forward"]
    info: ConnectionInfo

    def close(self) -> None:
        for f in self.forwards:
            f.close()


class SshLaunchedBackend(Backend):
    """Base of the ``slurm`` and ``ssh`` backends: run directories, connection files, forwards,
    restarts, observing with back-off, authentication. Subclasses submit, query and stop."""

    profile_keys = SSH_KEYS
    required_keys = ("host",)
    #: how long an observe() answer stays fresh at most (``Backoff.cap``)
    observe_cap: float = 5.0

    def __init__(self, resource: "Resource", runtime_dir: Callable[[str], Any]) -> None:
        super().__init__(resource, runtime_dir)
        self.settings = resource.settings
        self.target = target_of(self.settings)
        self._tunnels: dict[str, _Tunnel] = {}
        self._lock = threading.RLock()
        self._launcher_path: str | None = None
        self._backoff = Backoff(cap=self.observe_cap)
        self._observe_lock = threading.Lock()

    # -- the connection --------------------------------------------------------------------
    @property
    def conn(self) -> "SshConnection":
        """The resource's one shared SSH connection (paramiko is imported here, on first use)."""
        from ..transport.ssh import connection_for

        return connection_for(self.target)

    def run(self, command: str | list[str], stdin: bytes | str | None = None, timeout: float = 60) -> tuple[int, str, str]:
        """Run a remote command on the shared connection (argv elements are quoted)."""
        return self.conn.run(command, stdin=stdin, timeout=timeout)

    def work_dir(self) -> str:
        """The absolute remote work directory (``~`` expanded with the remote home)."""
        wd = self.settings.get("work_dir", DEFAULT_WORK_DIR)
        if wd == "~" or wd.startswith("~/"):
            wd = self.conn.home().rstrip("/") + wd[1:]
        elif not wd.startswith("/"):
            wd = self.conn.home().rstrip("/") + "/" + wd
        return wd.rstrip("/") or "/"

    @property
    def python(self) -> str:
        return self.settings.get("python", "python3")

    def ensure_launcher(self) -> str:
        """Upload the launcher once per content; returns its remote path."""
        if self._launcher_path is None:
            src = launcher_source()
            wd = self.work_dir()
            path = f"{wd}/launcher-{hashlib.sha256(src).hexdigest()[:12]}.py"
            cmd = (f"umask 077 && mkdir -p -- {shlex.quote(wd)} && "
                   f"{{ test -s {shlex.quote(path)} || cat > {shlex.quote(path)}; }}")
            rc, _, err = self.run(cmd, stdin=src)
            if rc != 0:
                raise BackendError(f"{self.resource.name}: cannot write to work_dir {wd}: {err.strip()[-300:]}")
            self._launcher_path = path
        return self._launcher_path

    def new_run_dir(self, runtime: Runtime) -> str:
        """A fresh run directory path for a runtime (created by the submit command)."""
        return f"{self.work_dir()}/runtimes/{run_dir_name(runtime.name)}"

    @staticmethod
    def rundir(runtime: Runtime) -> str:
        """The runtime's remote run directory, as recorded at request time."""
        try:
            return runtime.backend_state["run_dir"]
        except KeyError:
            raise BackendError(f"runtime {runtime.name!r} has no run directory; request it again") from None

    def launcher_argv(self, runtime: Runtime, rundir: str, *extra: str) -> list[str]:
        """The argv that starts the launcher for ``rundir`` (uploading the launcher if needed)."""
        return [self.python, self.ensure_launcher(), rundir, *extra]

    @staticmethod
    def in_new_run_dir(rundir: str, script: str, then: str) -> str:
        """The one prologue of every submission: create ``rundir`` private (0700, and its parent),
        enter it, save the script from stdin as ``script``, then run ``then`` there."""
        rd = shlex.quote(rundir)
        parent = shlex.quote(rundir.rsplit("/", 1)[0])
        return (f"umask 077 && mkdir -p -- {rd} && chmod 700 -- {parent} {rd} && cd -- {rd} && "
                f"cat > {shlex.quote(script)} && {then}")

    # -- kernel connection -----------------------------------------------------------------
    def _read_connection_file(self, runtime: Runtime) -> dict[str, Any] | None:
        """The kernel's connection file once its ports are bound; None before. The caller asks
        when the job runs; the launcher writes its seed (ports 0) and the kernel binds within a
        fraction of a second: wait for that here briefly (reading every 50 ms, as one would by
        hand) rather than let the caller sleep a whole, growing poll interval."""
        path = f"{self.rundir(runtime)}/kernel.json"
        deadline = time.monotonic() + SEED_WAIT_S
        while True:
            raw = self.conn.read_file(path)
            if not raw:
                if time.monotonic() >= deadline:
                    return None
                time.sleep(0.05)
                continue
            try:
                info = json.loads(raw)
                if all(int(info[p]) for p in PORT_NAMES):
                    return info
            except (ValueError, KeyError, TypeError):
                pass  # being written; read again
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def connection(self, runtime: Runtime) -> ConnectionInfo | None:
        info = self._read_connection_file(runtime)
        if info is None:
            return None
        try:
            ports = [int(info[p]) for p in PORT_NAMES]
            key, ip = str(info["key"]), str(info["ip"])
        except (ValueError, KeyError, TypeError):
            return None
        if ip in ("0.0.0.0", "", "*"):  # a guard: a kernel bound to every interface is refused, never used
            raise BackendError(f"runtime {runtime.name!r}: the kernel binds {ip!r}; refusing to use an exposed kernel")
        fingerprint = (ip, tuple(ports), key)
        with self._lock:
            tunnel = self._tunnels.get(runtime.name)
            if tunnel is not None and tunnel.fingerprint == fingerprint:
                return dict(tunnel.info)
            if tunnel is not None:
                tunnel.close()
            forwards = [self.conn.forward(ip, port) for port in ports]
            local = dict(info, ip="127.0.0.1", transport="tcp")
            local.setdefault("signature_scheme", "hmac-sha256")
            for name, fwd in zip(PORT_NAMES, forwards):
                local[name] = fwd.local_port
            self._tunnels[runtime.name] = _Tunnel(fingerprint, forwards, local)
            return dict(local)

    def close_tunnels(self, runtime: Runtime) -> None:
        with self._lock:
            tunnel = self._tunnels.pop(runtime.name, None)
        if tunnel is not None:
            tunnel.close()

    def restart(self, runtime: Runtime) -> dict[str, Any] | None:
        """Ask the launcher for a fresh kernel in the same allocation (flag file). The record
        does not change (same run directory, same job)."""
        rd = shlex.quote(self.rundir(runtime))
        rc, _, err = self.run(f"rm -f -- {rd}/kernel.json && touch -- {rd}/restart")
        if rc != 0:
            raise BackendError(f"runtime {runtime.name!r}: cannot restart its kernel: {err.strip()[-300:]}")
        self.close_tunnels(runtime)
        self.invalidate()
        return None

    def invalidate(self) -> None:
        """Forget cached observations (after a request, stop or restart)."""
        self._backoff.reset()

    # -- observing (shared: one query for all runtimes of the resource, with back-off) --------
    def recorded(self, runtime: Runtime) -> str:
        """Why this runtime's record cannot be queried ('' when it can)."""
        return "" if "run_dir" in runtime.backend_state else "no run directory recorded"

    def observe(self, runtimes: list[Runtime]) -> dict[str, Observation]:
        """One remote query for all runtimes whose records say enough (``recorded``), answered
        from a cache while fresh (``Backoff``). Only reads; never stops anything."""
        result: dict[str, Observation] = {}
        mine = []
        for r in runtimes:
            why = self.recorded(r)
            if why:
                result[r.name] = Observation(RuntimeState.FAILED, why)
            else:
                mine.append(r)
        if not mine:
            return result
        key = tuple((r.name, r.job_id, r.state) for r in mine)
        with self._observe_lock:
            if not self._backoff.fresh(key):
                try:
                    answer = self.query(mine)
                except TransportError:  # the channel (or connection) died under the query: it only
                    answer = self.query(mine)  # reads, so ask once more, reconnecting if need be
                self._backoff.store(key, answer)
            return {**result, **self._backoff.value}

    def query(self, runtimes: list[Runtime]) -> dict[str, Observation]:
        """Ask the remote side about ``runtimes`` now (one command); implemented per kind."""
        raise NotImplementedError

    # -- authentication --------------------------------------------------------------------
    def authenticate(self) -> AuthResult:
        """A fresh SSH handshake (host key verified) and ``true``; plus the scheduler check."""
        from ..transport.ssh import SshConnection

        conn = SshConnection(self.target)  # not the pooled one: this must be a real handshake
        try:
            rc, _, err = conn.run(["true"], timeout=30)
            if rc != 0:
                return AuthResult(self.resource.name, self.kind, False, f"`true` failed on {self.target.label}: {err.strip()[-200:]}")
            problem = self.check_remote(conn)
            if problem:
                return AuthResult(self.resource.name, self.kind, False, problem)
            return AuthResult(self.resource.name, self.kind, True, f"ok: {self.target.label}, host key verified")
        except TransportError as e:
            return AuthResult(self.resource.name, self.kind, False, str(e))
        finally:
            conn.close()

    def check_remote(self, conn: "SshConnection") -> str | None:
        """A problem found on the remote side after login (e.g. no sbatch), or None."""
        return None

    def close(self) -> None:
        with self._lock:
            tunnels, self._tunnels = list(self._tunnels.values()), {}
        for t in tunnels:
            t.close()

    # -- helpers for subclasses ------------------------------------------------------------
    def log_tail_command(self, runtime: Runtime) -> str:
        """A shell command printing the end of the runtime's job log (nothing if absent)."""
        return f"tail -c {LOG_TAIL_BYTES} -- {shlex.quote(self.rundir(runtime) + '/job.log')} 2>/dev/null"

    @staticmethod
    def ended(runtime: Runtime, why: str, log: str, expired: bool = False, stopped: bool = False) -> Observation:
        """The observation of a runtime whose kernel or job is over. (A runtime the user stopped
        is never observed again: the manager records STOPPED itself when it calls ``stop()``.)"""
        if expired:
            return Observation(RuntimeState.EXPIRED, why or "walltime reached", log_tail=log)
        if stopped:
            return Observation(RuntimeState.STOPPED, why, log_tail=log)
        if runtime.state == RuntimeState.READY:
            return Observation(RuntimeState.DEAD, why, log_tail=log)
        return Observation(RuntimeState.FAILED, why, log_tail=log)


class Backoff:
    """How long an ``observe()`` answer stays fresh: short while things change (and for ``hold``
    seconds after), then longer and longer while nothing does. A queued job can wait for hours;
    one query per runtime per second would be rude to a shared login node."""

    def __init__(self, first: float = 0.1, factor: float = 1.5, cap: float = 5.0, hold: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first, self.factor, self.cap, self.hold = first, factor, cap, hold
        self.clock = clock
        self.interval = first
        self.at = 0.0
        self.changed_at = clock()
        self.key: Any = None
        self.value: Any = None

    def fresh(self, key: Any) -> bool:
        """Is the stored answer for ``key`` still good?"""
        return key == self.key and self.clock() - self.at < self.interval

    def store(self, key: Any, value: Any) -> None:
        now = self.clock()
        if value != self.value or key != self.key:
            self.changed_at = now
        quiet = now - self.changed_at
        self.interval = self.first if quiet < self.hold else min(self.cap, self.interval * self.factor)
        self.key, self.value, self.at = key, value, now

    def reset(self) -> None:
        self.key, self.interval, self.changed_at = None, self.first, self.clock()
