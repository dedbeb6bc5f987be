"""Runtimes from Python: ``authenticate``, ``request_runtime``, ``get_runtime``, ``runtimes`` and the
``Runtime`` handle. The magics and the command line call the same ``RuntimeManager`` through
these functions; nothing here keeps runtime state of its own (the manager owns it).

A runtime requested from a plain script is stopped when the script ends unless it was asked to
be kept (``keep=True``); inside IPython (a notebook) runtimes are kept, as with the magics.
Ctrl-C while ``Runtime.run`` waits interrupts the remote cell first, then the script.
"""
from __future__ import annotations

import ast
import atexit
import getpass
import re
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

from .. import checks
from ..errors import AiravataError, InvalidArgument
from . import recording

if TYPE_CHECKING:
    import pandas as pd

#: ``on_output(name, text)``: name is ``"stdout"``, ``"stderr"`` or ``"display"`` (the text/plain
#: of a rich output such as a DataFrame or a figure)
OutputCallback = Callable[[str, str], None]

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_owned: dict[str, Runtime] = {}  # runtimes this process requested and must stop at exit
_owned_lock = threading.Lock()
_exit_hook_installed = False


def _manager():
    from .. import get_manager

    return get_manager()


class RemoteError(AiravataError):
    """A cell failed on a runtime. ``str()`` is one line; the remote traceback is in
    ``remote_traceback`` and shown under the local one when the script stops on it."""

    def __init__(self, runtime: str, ename: str, evalue: str, traceback: list[str]) -> None:
        self.runtime, self.ename, self.evalue = runtime, ename, evalue
        #: the remote kernel's traceback, one string per line, colour codes removed
        self.remote_traceback = [_ANSI_RE.sub("", line) for line in traceback]
        super().__init__(f"{ename}: {evalue} (in a cell on runtime {runtime!r})")
        text = "\n".join(self.remote_traceback)
        if text and hasattr(self, "add_note"):
            self.add_note(f"--- remote traceback (runtime {runtime!r}) ---\n{text}")


class RemoteValue:
    """A cell's result that is not a plain Python literal: its MIME bundle, as the remote
    kernel rendered it (``data["text/plain"]``, maybe ``text/html``, ``image/png``)."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.data, self.metadata = data, metadata

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "<remote value>"))


def _value(content: dict[str, Any]) -> Any:
    """A literal result (``40 + 2``, ``'text'``, ``[1, 2]``) as the Python value; else a RemoteValue."""
    data = content.get("data") or {}
    text = data.get("text/plain")
    if isinstance(text, str) and len(text) < 100_000:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        else:
            if repr(value) == text:
                return value
    return RemoteValue(data, content.get("metadata") or {})


class ScriptSink:
    """Where a cell's output goes in a script: this process's stdout/stderr, or ``on_output``."""

    def __init__(self, on_output: OutputCallback | None = None) -> None:
        self.on_output = on_output

    def _emit(self, name: str, text: str) -> None:
        recording.note_output(name, text)
        if self.on_output is not None:
            self.on_output(name, text)
            return
        out = sys.stderr if name == "stderr" else sys.stdout
        out.write(text)
        out.flush()

    def stream(self, label: str | None, name: str, text: str) -> None:
        self._emit(name, text)

    def stream_packed(self, label: str | None, packed: bytes, unpack: Callable[[bytes], Any]) -> None:
        c = unpack(packed)
        self._emit(c.get("name", "stdout"), c.get("text", ""))

    def display(self, label: str | None, msg_type: str, content: dict[str, Any]) -> None:
        text = (content.get("data") or {}).get("text/plain")
        if text:
            self._emit("display", str(text) + "\n")

    def clear_output(self, label: str | None, wait: bool) -> None:
        pass  # a terminal keeps what it printed

    def input(self, label: str | None, prompt: str, password: bool) -> str:
        if password:
            from .. import known_secrets

            value = getpass.getpass(prompt)
            known_secrets.remember(value)  # never recorded in a session
            return value
        return input(prompt)

    def comm(self, link: Any, msg_type: str, content: dict[str, Any], buffers: list,
             metadata: dict[str, Any] | None = None) -> None:
        pass  # widgets need a notebook frontend


def _stop_owned_at_exit() -> None:
    """atexit: stop the runtimes this script requested without ``keep=True``."""
    with _owned_lock:
        handles = [h for h in _owned.values() if not h.keep]
        _owned.clear()
    for h in handles:
        try:
            msg = _manager().stop(h.name)
        except AiravataError as e:
            msg = f"could not stop runtime {h.name!r}: {e}"
        print(f"airavata-magic: {msg} at script exit (request it with keep=True to keep it)",
              file=sys.stderr, flush=True)


def _in_ipython() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


def _own(handle: Runtime) -> None:
    """Remember a runtime to stop at exit; make SIGTERM (e.g. ``scancel`` of a batch script) end
    the script through ``SystemExit`` so the stop runs then too."""
    global _exit_hook_installed
    with _owned_lock:
        _owned[handle.name] = handle
        if _exit_hook_installed:
            return
        _exit_hook_installed = True
    atexit.register(_stop_owned_at_exit)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def on_term(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, on_term)


class Runtime:
    """A handle on one of this user's runtimes, by name.

    The record itself lives with the ``RuntimeManager`` (and on disk); the handle only names it,
    so two handles on the same name see the same runtime. Get one from ``request_runtime`` or
    ``get_runtime(name)``.
    """

    def __init__(self, name: str, *, keep: bool = True, message: str = "") -> None:
        self.name = name
        #: False: stopped when the script ends (see the module docstring)
        self.keep = keep
        #: the one-line message of the request, e.g. "runtime 'demo' requested on local (job 123, starting)"
        self.message = message

    def __repr__(self) -> str:
        try:
            state = self.record.state.value
        except AiravataError:
            state = "unknown"
        return f"<Runtime {self.name!r} {state}>"

    @property
    def record(self):
        """The runtime's current record (``airavata_magic.runtime.Runtime``), read from the store."""
        return _manager().get(self.name)

    @property
    def state(self) -> str:
        """requested, queued, starting, ready, dead, stopped, failed or expired."""
        return self.record.state.value

    @recording.recorded(method=True)
    def wait(self, timeout: float | None = None, *, progress: bool = True) -> Runtime:
        """Block until the runtime's kernel answers; return this handle.

        Raises ``RuntimeFailed`` at once (with the reason and the job's log tail) when the runtime
        fails, expires, dies or is stopped, and ``RuntimeUnavailable`` after ``timeout`` seconds.
        ``progress`` prints one line to stderr each time the state or the reason changes."""
        if timeout is not None:
            timeout = checks.seconds(timeout)
        last: list[tuple[str, str]] = []

        def report(rt: Any, elapsed: float, log_tail: str = "") -> None:
            key = (rt.state.value, rt.reason)
            if progress and last != [key]:
                last[:] = [key]
                why = f" ({rt.reason})" if rt.reason else ""
                print(f"[{elapsed:6.1f} s] {rt.name}: {rt.state.value}{why}", file=sys.stderr, flush=True)

        _manager().wait(self.name, timeout=timeout, on_update=report)
        return self

    @recording.recorded(method=True)
    def run(self, code: str, *, on_output: OutputCallback | None = None, stdin: bool | None = None) -> Any:
        """Run ``code`` on the runtime's kernel as one cell and return its result.

        Output streams while the cell runs: to this process's stdout/stderr, or to
        ``on_output(name, text)``. The result is the cell's last expression: a Python value when
        it is a literal (``40 + 2`` gives ``42``), else a ``RemoteValue`` with its MIME bundle, or
        None. A failing cell raises ``RemoteError`` carrying the remote traceback. Ctrl-C
        interrupts the remote cell, then raises ``KeyboardInterrupt`` here. ``stdin``: whether
        ``input()``/``getpass()`` on the runtime may prompt here (default: when stdin is a
        terminal)."""
        if not isinstance(code, str):
            raise InvalidArgument(f"code must be a str, not {type(code).__name__}")
        if stdin is None:
            stdin = bool(sys.stdin is not None and sys.stdin.isatty())
        try:
            (outcome,) = _manager().run([self.name], code, ScriptSink(on_output), allow_stdin=stdin)
        except KeyboardInterrupt as e:
            if type(e) is KeyboardInterrupt:
                raise
            # The relay's subclass says how the remote cell ended; a script wants a plain Ctrl-C,
            # which Python turns into the usual exit by SIGINT (status 130 in a shell).
            raise KeyboardInterrupt(f"the cell on runtime {self.name!r} was interrupted") from None
        if outcome.status != "ok":
            e = outcome.error or {}
            raise RemoteError(self.name, str(e.get("ename") or "RemoteError"), str(e.get("evalue") or ""),
                              [str(line) for line in (e.get("traceback") or [])])
        return _value(outcome.result) if outcome.result else None

    @recording.recorded(method=True)
    def stat(self) -> dict[str, Any]:
        """Details of the runtime: resource, state, job id, node, resources asked for, walltime
        left and, when ready, what its kernel sees (host, Python, GPUs)."""
        return _manager().stat(self.name)

    @recording.recorded(method=True)
    def interrupt(self) -> str:
        """Interrupt the cell running on the runtime (from another thread, or a cell left running)."""
        return _manager().interrupt(self.name)

    @recording.recorded(method=True)
    def restart(self, timeout: float = 120) -> str:
        """A new kernel in the same allocation (variables cleared); waits until it answers."""
        return _manager().restart(self.name, timeout=timeout)

    @recording.recorded(method=True)
    def stop(self) -> str:
        """Cancel the job or delete the pod and close its tunnels; returns what was done."""
        msg = _manager().stop(self.name)
        with _owned_lock:
            _owned.pop(self.name, None)
        return msg


@recording.recorded
def authenticate(*resources: str, file: str | None = None) -> pd.DataFrame:
    """Check each resource's credentials for real (SSH handshake with host-key check and a
    ``true`` command; Kubernetes: may this user create pods and port-forwards).

    Returns a DataFrame with one row per resource: resource, kind, ok, detail (what is wrong and
    how to fix it). ``resources``: names from the profile (default: all); ``file``: the profile."""
    import pandas as pd

    rows = _manager().authenticate(file, list(resources) or None)
    return pd.DataFrame([{"resource": r.resource, "kind": r.kind, "ok": r.ok, "detail": r.detail} for r in rows],
                        columns=["resource", "kind", "ok", "detail"])


@recording.recorded
def request_runtime(name: str, *, file: str | None = None, resource: str | None = None, use: str | None = None,
                    preset: str | None = None, cpus: int | None = None, memory: str | int | None = None,
                    gpus: int | None = None, walltime: int | None = None, partition: str | None = None,
                    account: str | None = None, image: str | None = None, node: str | None = None,
                    setup: list[str] | str | None = None, keep: bool | None = None) -> Runtime:
    """Submit a runtime and return at once with its handle (``.wait()`` until it is ready).

    ``name`` may be a preset from the profile's ``runtimes:``; otherwise give ``resource`` (or
    ``use="hpc:gpu,lab-k8s"``: the candidate expected to start first wins). The other settings
    are those of ``%request_runtime``: ``memory`` as ``"8G"``, ``"512M"`` or MB; ``walltime`` in
    minutes; ``setup``: shell lines run in the job after the resource's own, instead of the preset's (e.g.
    ``"module load cuda/12"``). ``keep``: keep the runtime when this script ends (default: stopped at the end of a
    plain script, kept inside IPython)."""
    overrides = {"cpus": cpus, "memory": memory, "gpus": gpus, "walltime": walltime, "partition": partition,
                 "account": account, "image": image, "node": node, "setup": setup}
    if keep is not None and not isinstance(keep, bool):
        raise InvalidArgument(f"keep must be True or False, not {keep!r}")
    _, message = _manager().request(name, file=file, resource=resource, use=use, overrides=overrides,
                                    preset=preset)
    handle = Runtime(name, keep=_in_ipython() if keep is None else keep, message=message)
    if not handle.keep:
        _own(handle)
    return handle


@recording.recorded
def get_runtime(name: str) -> Runtime:
    """A handle on an existing runtime (requested earlier, here or in a notebook). It is not
    stopped when the script ends."""
    _manager().get(name)  # a clear error now for an unknown name
    with _owned_lock:
        owned = _owned.get(name)
    return owned if owned is not None else Runtime(name, keep=True)


@recording.recorded
def runtimes() -> pd.DataFrame:
    """All of this user's runtimes as a DataFrame: name, resource, state, job id, node, cpus,
    gpus, memory, walltime left, current, reason (live ones refreshed first)."""
    return _manager().table()

