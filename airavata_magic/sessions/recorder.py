"""The recorder: journals every cell the notebook kernel executes while a session is on.

What it hooks (documented IPython events, nothing patched):

- ``pre_run_cell``: the cell as the user typed it (``info.raw_cell``) and the id of the
  ``execute_request`` it belongs to (``kernel.get_parent('shell')``);
- ``post_run_cell``: its status, execution count, and the runtimes it ran on
  (``CellRouting.ran_on``; [] = the notebook kernel itself).

Outputs come from the notebook kernel's own iopub socket: a background thread subscribes to it
like a second frontend (through the relay's ``KernelLink``) and groups messages by their parent
``msg_id``. It therefore sees exactly what JupyterLab or papermill sees, relayed remote output
included. A cell is written in ``post_run_cell``, i.e. before its ``execute_reply`` leaves: a
marker published behind the cell's output (``relay.mark_iopub``) tells when the listener has
received all of it. So a cell whose reply the frontend holds is in the journal, even if the
kernel is killed right after.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import AiravataError, InvalidArgument
from ..relay import mark_iopub
from ..runtime import LOCAL
from . import journal
from .listener import IOPubListener
from .redact import Redactor

OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")
# Lines of these magics are about recording itself; they are neither recorded nor replayed.
SELF_MAGICS = ("session", "template")
# How long post_run_cell waits for the listener to catch up with a cell's output before writing
# the cell with what arrived (a cell is never lost for want of its last output).
CATCH_UP_TIMEOUT = 5.0


def strip_self_magics(code: str) -> str:
    """The cell without its ``%session``/``%template`` lines (''  when nothing else is left)."""
    kept = []
    for line in code.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("%") and not s.startswith("%%"):
            name = s[1:].split(None, 1)[0] if len(s) > 1 else ""
            if name in SELF_MAGICS:
                continue
        kept.append(line)
    out = "".join(kept)
    return out if any(ln.strip() and not ln.strip().startswith("#") for ln in kept) else ""


@dataclass
class _Cell:
    """A cell being recorded: filled by the main thread (code, status) and the listener (outputs)."""

    code: str
    started: float
    t0: float
    outputs: list[dict[str, Any]] = field(default_factory=list)
    clear_on_next: bool = False
    finished: bool = False  # post_run_cell has run
    idle: bool = False  # the idle status for its request has arrived
    status: str = "ok"
    execution_count: int | None = None
    duration: float = 0.0
    runtimes: list[str] = field(default_factory=list)


class Recorder:
    """Owns the active session of this kernel (at most one)."""

    def __init__(self, shell: Any, manager: Any = None, store: journal.SessionStore | None = None,
                 routing: Any = None) -> None:
        self.shell = shell
        self.manager = manager
        self.routing = routing  # routing.CellRouting: where the current cell ran
        self._store = store
        self.name: str | None = None
        self.journal: journal.JournalFile | None = None
        self.redactor = Redactor()
        self._lock = threading.Condition()
        self._pending: dict[str, _Cell] = {}
        self._order: list[str] = []  # msg ids in execution order (cells finish in order)
        self._displays: dict[str, list[tuple[Any, int]]] = {}  # display_id -> [(cell or index, output index)]
        self._depth = 0
        self._current: str | None = None
        self._listener: IOPubListener | None = None
        self._marks = 0  # markers published so far (see _catch_up)
        self._mark_seen: str | None = None  # the last marker the listener received
        self._lockfd: int | None = None
        self._failed: str | None = None
        atexit.register(self.close)

    @property
    def store(self) -> journal.SessionStore:
        if self._store is None:
            self._store = journal.SessionStore()
        return self._store

    @property
    def active(self) -> bool:
        return self.journal is not None

    # -- start / stop --------------------------------------------------------------------------
    def start(self, name: str, append: bool = False) -> str:
        """Start journaling into session ``name`` (a new file unless ``append``)."""
        journal.validate_session_name(name)
        if self.active:
            raise InvalidArgument(f"session {self.name!r} is recording; %session stop first")
        path = self.store.path(name)
        cells: list[dict[str, Any]] = []
        meta = journal.new_metadata(name, _kernel_name(self.shell))
        if path.exists() and not append:
            raise InvalidArgument(f"session {name!r} exists ({path}); add --append to continue it, "
                                  "or choose another name")
        lock = _lock_session(path)  # one recording kernel per session file
        try:
            if path.exists():
                old = journal.read_session(path)
                cells, meta = old["cells"], old["metadata"]
            listener = IOPubListener(self._on_message, self._on_listener_error)
            listener.start_and_wait()
            try:
                self.journal = journal.JournalFile(path, meta, cells)
            except OSError as e:
                listener.stop()
                raise AiravataError(f"cannot write the session journal {path}: {e.strerror}") from None
        except BaseException:
            os.close(lock)
            raise
        self._listener, self._lockfd, self._failed = listener, lock, None
        self.redactor = Redactor()
        self.name = name
        # The cell that ran `%session start` is in flight: its later messages are not recorded.
        return f"recording session {name!r} to {path}"

    def stop(self) -> str:
        """Stop journaling; every cell completed before this one is on disk when it returns."""
        if not self.active:
            raise InvalidArgument("no session is recording; %session start NAME begins one")
        # Every earlier cell was written by its post_run_cell, before its reply left.
        name, path = self.name, self.journal.path
        n = len(self.journal.cells)
        self.close()
        return f"session {name!r} stopped: {n} cells in {path}"

    def close(self) -> None:
        """Stop the listener and close the file (idempotent)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        with self._lock:
            if self.journal is not None:
                self.journal.close()
            self.journal, self.name = None, None
            self._pending.clear()
            self._order.clear()
            self._displays.clear()
            if self._lockfd is not None:
                os.close(self._lockfd)  # releases the flock
                self._lockfd = None

    # -- IPython events (main thread) ------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        self._depth += 1
        parent = _parent_id(self.shell)
        if self._depth == 1:
            self._current = parent
        if not self.active or self._depth > 1 or parent is None:
            return  # nested cells (%session load) belong to the cell that ran them
        code = strip_self_magics(info.raw_cell or "")
        if not code:
            return
        with self._lock:
            self._pending[parent] = _Cell(code=code, started=time.time(), t0=time.perf_counter())
            self._order.append(parent)

    def post_run_cell(self, result: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth or not self.active:
            return
        if self._failed:
            # Writing failed on the listener thread (disk full, file removed): say so once, stop.
            name, why = self.name, self._failed
            self.close()
            print(f"airavata-magic: recording of session {name!r} stopped: {why}", file=sys.stderr, flush=True)
            return
        parent = self._current
        with self._lock:
            cell = self._pending.get(parent) if parent else None
        if cell is None:
            return
        routed = list(self.routing.ran_on) if self.routing is not None else []
        self._note_runtimes(routed)
        self.redactor.learn_from_namespace(cell.code, getattr(self.shell, "user_ns", {}))
        duration = time.perf_counter() - cell.t0
        caught_up = self._catch_up()
        with self._lock:
            cell.runtimes = routed or [LOCAL]
            cell.status = "ok" if result.success else "error"
            cell.execution_count = result.execution_count
            cell.duration = duration
            cell.finished = True
            # All its output has arrived (or will not in time): write it before the reply leaves.
            cell.idle = cell.idle or caught_up
            self._flush_locked()

    def _catch_up(self) -> bool:
        """Wait until the listener has received everything this kernel published so far (the
        marker sent behind it came back). Returns False only outside ipykernel; on time-out
        the cell is written with the output that arrived (idle comes after the reply: too late)."""
        listener = self._listener
        if listener is None:
            return False
        self._marks += 1
        token = f"{listener.topic}-{self._marks}"
        if not mark_iopub(token):
            return False
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        with self._lock:
            while self._mark_seen != token and listener.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(left)
        return True

    def _note_runtimes(self, routed: list[str]) -> None:
        j = self.journal
        if j is None:
            return
        known = j.session["runtimes"]
        for name in routed:
            if name in known or self.manager is None:
                continue
            try:
                rt = self.manager.store.load(name)
            except AiravataError:
                continue
            from dataclasses import asdict

            record = {"resource": rt.resource, "kind": rt.kind, "spec": asdict(rt.spec),
                      "preset": getattr(rt, "preset", None), "profile": getattr(rt, "profile", None)}
            with self._lock:
                j.set_runtime(name, record)

    # -- iopub messages (listener thread) --------------------------------------------------------
    def _on_listener_error(self, why: str) -> None:
        self._failed = self._failed or why

    def _on_message(self, msg: dict[str, Any]) -> None:
        parent = (msg.get("parent_header") or {}).get("msg_id")
        kind = msg["header"]["msg_type"]
        content = msg.get("content", {})
        with self._lock:
            if kind == "iopub_welcome":  # a marker of _catch_up: everything before it has arrived
                self._mark_seen = content.get("subscription")
                self._lock.notify_all()
                return
            if kind == "status":
                if content.get("execution_state") == "idle" and parent in self._pending:
                    self._pending[parent].idle = True
                    self._flush_locked()
                return
            if kind == "update_display_data":
                self._update_display(content)
                return
            cell = self._pending.get(parent)
            if cell is None:
                return
            if kind == "clear_output":
                if content.get("wait"):
                    cell.clear_on_next = True
                else:
                    self._clear(cell)
                return
            if kind not in OUTPUT_TYPES:
                return
            if cell.clear_on_next:
                self._clear(cell)
            self._add_output(cell, msg)

    def _clear(self, cell: _Cell) -> None:
        cell.outputs = []
        cell.clear_on_next = False
        for did in list(self._displays):
            self._displays[did] = [t for t in self._displays[did] if t[0] is not cell]

    def _add_output(self, cell: _Cell, msg: dict[str, Any]) -> None:
        content = msg["content"]
        if msg["header"]["msg_type"] == "stream":
            last = cell.outputs[-1] if cell.outputs else None
            if last and last["output_type"] == "stream" and last["name"] == content.get("name"):
                last["text"] += content.get("text", "")
            else:
                cell.outputs.append({"output_type": "stream", "name": content.get("name", "stdout"),
                                     "text": content.get("text", "")})
            return
        import nbformat

        out = dict(nbformat.v4.output_from_msg(msg))
        cell.outputs.append(out)
        did = (content.get("transient") or {}).get("display_id")
        if did:
            self._displays.setdefault(did, []).append((cell, len(cell.outputs) - 1))

    def _update_display(self, content: dict[str, Any]) -> None:
        did = (content.get("transient") or {}).get("display_id")
        rewrite: set[int] = set()
        for owner, idx in self._displays.get(did, []):
            outputs = owner.outputs if isinstance(owner, _Cell) else self.journal.cells[owner]["outputs"]
            if idx < len(outputs):
                written = not isinstance(owner, _Cell)  # pending cells are redacted when written
                data = content.get("data", {})
                outputs[idx]["data"] = self.redactor.data(data) if written else data
                outputs[idx]["metadata"] = content.get("metadata", {})
                if written:
                    rewrite.add(owner)
        for index in rewrite:
            self.journal.replace(index, self.journal.cells[index])

    def _flush_locked(self) -> None:
        """Write every leading cell that is both finished and idle, in execution order."""
        j = self.journal
        while self._order and j is not None:
            cell = self._pending.get(self._order[0])
            if cell is None:
                self._order.pop(0)
                continue
            if not (cell.finished and cell.idle):
                return
            msg_id = self._order.pop(0)
            del self._pending[msg_id]
            index = len(j.cells)
            code = self.redactor.code(cell.code)  # first: values it assigns to secret names are learned
            outputs = [self.redactor.output(o) for o in cell.outputs]
            meta = {"runtimes": cell.runtimes, "status": cell.status, "started": round(cell.started, 3),
                    "duration": round(cell.duration, 6)}
            used = j.session.setdefault("used", [])
            for r in cell.runtimes:
                if r not in used:
                    used.append(r)
            j.append(journal.new_code_cell(code, outputs, cell.execution_count, meta))
            for did, owners in self._displays.items():
                self._displays[did] = [(index if o is cell else o, i) for o, i in owners]


def _parent_id(shell: Any) -> str | None:
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return None
    try:
        parent = kernel.get_parent("shell")
    except Exception:  # noqa: BLE001 - an older ipykernel without channels
        parent = getattr(shell, "parent_header", None)
    return ((parent or {}).get("header") or {}).get("msg_id")


def _kernel_name(shell: Any) -> str:
    try:
        from ipykernel.connect import get_connection_info

        return get_connection_info(unpack=True).get("kernel_name") or "python3"
    except Exception:  # noqa: BLE001 - not in a kernel
        return "python3"


def _lock_session(path: Any) -> int:
    """Hold an exclusive lock on ``.NAME.ipynb.lock`` while recording; refuse a second recorder."""
    import fcntl

    lock_path = path.with_name(f".{path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InvalidArgument(f"session {path.stem!r} is being recorded by another kernel; "
                              "stop it there or choose another name") from None
    return fd
