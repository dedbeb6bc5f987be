"""Script sessions: while one is on, every call of the Python API is journaled as one notebook
cell whose code makes the same call (``demo = am.request_runtime('demo', resource='local')``,
``demo.run('print(1)')``), with its arguments (secrets redacted by ``sessions.redact``), a result
summary, its duration and status, and the output of ``Runtime.run``.

The journal is the same nbformat file as a notebook session (``sessions/journal.py``; one
``pwrite`` per call, so a killed script keeps every completed call), marked ``kind: script``.
API functions opt in with ``@recorded``; a call made inside another recorded call is not
recorded again.
"""
from __future__ import annotations

import functools
import inspect
import keyword
import re
import threading
import time
from typing import Any, Callable

from ..errors import InvalidArgument

_state = threading.local()  # .depth: recorded calls in progress; .outputs: the current call's
_active: "ScriptRecorder | None" = None
_lock = threading.RLock()  # one call journaled at a time
OUTPUT_CAP = 64 * 1024  # characters of run() output kept per call
_CALLABLE = "<callable, not recorded>"


def _var(runtime_name: str) -> str:
    """A Python variable for a runtime in the exported code: its name when that is one."""
    var = re.sub(r"\W", "_", runtime_name)
    if not var.isidentifier() or keyword.iskeyword(var) or var in ("am", "secret"):
        var = "rt_" + var
    return var


def _summary(value: Any, call: str) -> str:
    """One line about what a call returned."""
    if value is None:
        return "done"
    if call == "request_runtime" and getattr(value, "message", ""):
        return value.message
    if type(value).__name__ == "DataFrame":
        return f"DataFrame with {len(value)} rows: {', '.join(map(str, value.columns))}"
    if type(value).__name__ == "Runtime" and hasattr(value, "message"):
        try:
            return f"runtime {value.name!r}: {value.state}"
        except Exception:  # noqa: BLE001 - a summary must never fail the call
            return f"runtime {value.name!r}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in list(value.items())[:12]) + "}"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 300 else text[:300] + "..."


class ScriptRecorder:
    """The active script session of this process (at most one)."""

    def __init__(self, name: str, journal: Any, lockfd: int) -> None:
        from ..sessions.redact import Redactor

        self.name, self.journal, self._lockfd = name, journal, lockfd
        self.redactor = Redactor()
        self.bound: dict[str, str] = {}  # runtime name -> variable already assigned in the code
        self.secrets_used = False

    # -- code of one call ----------------------------------------------------------------------
    def _arg(self, param: str, value: Any, code_arg: bool) -> str:
        from ..sessions.redact import is_secret_name

        if isinstance(value, str) and is_secret_name(param):
            self.redactor.learn(value)
            self.secrets_used = True
            return f"secret({param!r})"
        if isinstance(value, str):
            return repr(self.redactor.code(value) if code_arg else self.redactor.text(value))
        if callable(value):
            return _CALLABLE  # a callback only this process has: left out of the replayed call
        return self.redactor.text(repr(value))

    def source(self, fn: Callable, method: bool, args: tuple, kwargs: dict) -> tuple[str, dict[str, str], str | None]:
        """(code of the call, its arguments as recorded, the runtime a method was called on)."""
        sig = inspect.signature(fn)
        bound = sig.bind(*args, **kwargs)
        target = None
        positional: list[str] = []
        keywords: list[str] = []
        recorded: dict[str, str] = {}
        for i, (pname, value) in enumerate(bound.arguments.items()):
            if method and i == 0:
                target = value.name  # self: a Runtime handle
                continue
            p = sig.parameters[pname]
            if p.kind == p.VAR_POSITIONAL:
                texts = [self._arg(pname, v, False) for v in value]
                positional += texts
                recorded[pname] = ", ".join(texts)
            elif p.kind == p.VAR_KEYWORD:
                for k, v in value.items():
                    keywords.append(f"{k}={self._arg(k, v, False)}")
                    recorded[k] = keywords[-1].split("=", 1)[1]
            else:
                text = self._arg(pname, value, pname == "code")
                recorded[pname] = text
                if text == _CALLABLE:
                    continue
                if p.kind == p.KEYWORD_ONLY:
                    keywords.append(f"{pname}={text}")
                else:
                    positional.append(text)
        call = f"{fn.__name__}({', '.join(positional + keywords)})"
        if not method:
            return f"am.{call}", recorded, None
        prefix = ""
        if target not in self.bound:
            self.bound[target] = _var(target)
            prefix = f"{self.bound[target]} = am.get_runtime({target!r})\n"
        return f"{prefix}{self.bound[target]}.{call}", recorded, target

    # -- journal -------------------------------------------------------------------------------
    def add(self, code: str, call: str, recorded: dict[str, str], runtime: str | None, status: str,
            summary: str, duration: float, outputs: list[dict[str, Any]]) -> None:
        from ..sessions.journal import new_code_cell

        meta = {"call": call, "args": recorded, "result": self.redactor.text(summary), "status": status,
                "duration": round(duration, 4), "runtimes": [runtime] if runtime else [], "started": time.time() - duration}
        if runtime:
            used = self.journal.session.setdefault("used", [])
            if runtime not in used:
                used.append(runtime)
        if self.secrets_used:
            self.journal.session["secrets"] = True
        self.journal.append(new_code_cell(code, outputs, None, meta))

    def close(self) -> int:
        import os

        n = len(self.journal.cells)
        self.journal.close()
        os.close(self._lockfd)
        return n


def start(name: str, append: bool = False) -> str:
    """Start recording API calls into session ``name``; the message says where."""
    global _active
    from ..sessions import journal
    from ..sessions.recorder import _lock_session

    journal.validate_session_name(name)
    with _lock:
        if _active is not None:
            raise InvalidArgument(f"session {_active.name!r} is recording; am.session.stop() first")
        store = journal.SessionStore()
        path = store.path(name)
        if path.exists() and not append:
            raise InvalidArgument(f"session {name!r} exists ({path}); pass append=True to continue it, "
                                  "or choose another name")
        lockfd = _lock_session(path)
        cells: list[dict[str, Any]] = []
        meta = journal.new_metadata(name)
        if path.exists():
            old = journal.read_session(path)
            if old["metadata"].get("airavata", {}).get("session", {}).get("kind") != "script":
                import os

                os.close(lockfd)
                raise InvalidArgument(f"session {name!r} is not a script session; choose another name")
            cells, meta = old["cells"], old["metadata"]
        meta["airavata"]["session"]["kind"] = "script"
        _active = ScriptRecorder(name, journal.JournalFile(path, meta, cells), lockfd)
        return f"recording session {name!r} to {path}"


def stop() -> str:
    """Stop recording; every completed call is on disk."""
    global _active
    with _lock:
        if _active is None:
            raise InvalidArgument("no session is recording; am.session.start(NAME) begins one")
        rec, _active = _active, None
        n = rec.close()
        return f"session {rec.name!r} stopped: {n} calls in {rec.journal.path}"


def active() -> str | None:
    """The name of the session recording now, or None."""
    return _active.name if _active is not None else None


def note_output(name: str, text: str) -> None:
    """Output of the call being recorded (``Runtime.run`` streams): kept, capped, redacted."""
    outputs = getattr(_state, "outputs", None)
    if outputs is None:
        return
    stream = "stderr" if name == "stderr" else "stdout"
    kept = sum(len(o["text"]) for o in outputs)
    if kept >= OUTPUT_CAP:
        return
    text = text[:OUTPUT_CAP - kept]
    if outputs and outputs[-1]["name"] == stream:
        outputs[-1]["text"] += text
    else:
        outputs.append({"output_type": "stream", "name": stream, "text": text})


def recorded(fn: Callable | None = None, *, method: bool = False) -> Callable:
    """Decorator: journal calls of an API function (or ``Runtime`` method) while a session is on."""
    if fn is None:
        return lambda f: recorded(f, method=method)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rec = _active
        depth = getattr(_state, "depth", 0)
        if rec is None or depth:
            return fn(*args, **kwargs)
        _state.depth, _state.outputs = depth + 1, []
        t0 = time.perf_counter()
        status, summary, result = "ok", "", None
        try:
            result = fn(*args, **kwargs)
            summary = _summary(result, fn.__name__)
            return result
        except BaseException as e:
            status, summary = "error", f"{type(e).__name__}: {e}".splitlines()[0]
            if hasattr(e, "remote_traceback"):
                _state.outputs.append({"output_type": "error", "ename": e.ename, "evalue": e.evalue,
                                       "traceback": list(e.remote_traceback)})
            raise
        finally:
            duration = time.perf_counter() - t0
            outputs, _state.depth, _state.outputs = _state.outputs, depth, None
            _journal_call(rec, fn, method, args, kwargs, result if status == "ok" else None, status, summary,
                          duration, outputs)

    return wrapper


def _journal_call(rec: ScriptRecorder, fn: Callable, method: bool, args: tuple, kwargs: dict, result: Any,
                  status: str, summary: str, duration: float, outputs: list[dict[str, Any]]) -> None:
    """Append one finished call to the session (if it is still the one recording)."""
    with _lock:
        if _active is not rec:
            return
        try:
            code, args_rec, target = rec.source(fn, method, args, kwargs)
        except TypeError:  # the call itself had bad arguments: nothing to replay
            return
        if not method and type(result).__name__ == "Runtime":
            target = result.name  # later calls on this handle use the variable bound here
            rec.bound[target] = _var(target)
            code = f"{rec.bound[target]} = {code}"
        rec.add(code, fn.__name__, args_rec, target, status, summary, duration,
                [rec.redactor.output(o) for o in outputs])
