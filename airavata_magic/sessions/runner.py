"""Running a notebook with papermill in a child process, and reading what happened.

A child process (``python -m papermill``) rather than papermill in this process: the caller may be
a notebook kernel with its own event loop, and parallel sweeps want independent kernels. With a
runtime preset, the child gets a private kernelspec ``airavata-PRESET`` (our provisioner) on its
``JUPYTER_PATH``, so the notebook's kernel runs on a fresh runtime from that preset.
"""
from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .values import recorded_values


@dataclass
class RunResult:
    """How one papermill execution ended."""

    output: str
    status: str  # ok | failed
    duration: float
    error: str = ""  # which cell and why, one line
    values: dict[str, Any] = field(default_factory=dict)


def first_error(nb: dict[str, Any], usage_errors: bool = True) -> str:
    """``cell N: Ename: evalue`` for the first error output of an executed notebook, or ''.
    With ``usage_errors``, a magic's one-line ``UsageError`` on stderr counts too."""
    n = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        n += 1
        for o in cell.get("outputs", []) or []:
            if o.get("output_type") == "error":
                return f"cell {n}: {o.get('ename')}: {o.get('evalue')}".strip()
            if usage_errors and o.get("output_type") == "stream" and o.get("name") == "stderr" \
                    and "UsageError:" in o.get("text", ""):
                line = next(ln for ln in o["text"].splitlines() if "UsageError:" in ln)
                return f"cell {n}: {line.strip()}"
    return ""


def run_notebook(source: str | Path, output: str | Path, parameters: dict[str, Any] | None = None, *,
                 kernel_name: str | None = None, runtime: str | None = None, cwd: str | None = None,
                 timeout: float | None = None, env: dict[str, str] | None = None,
                 isolate: bool = True, on_cell: Callable[[int, int], None] | None = None) -> RunResult:
    """Execute ``source`` into ``output`` with papermill in a child process.

    ``on_cell(done, total)`` is called (in this thread) as papermill finishes cells, e.g. to
    advance a ``progress.Progress``.

    With ``isolate`` (the default) the run gets its own ``AIRAVATA_MAGIC_HOME``, so the runtimes an
    exported notebook requests by name never collide with the user's live runtimes or with a
    parallel run of the same template; whatever the run left running (it stopped at an error
    before its teardown cell) is stopped afterwards.
    """
    output = Path(output)
    child_env = dict(os.environ if env is None else env)
    tmp = tempfile.TemporaryDirectory(prefix="airavata-run-")
    home = Path(tmp.name) / "home"
    if isolate:
        child_env["AIRAVATA_MAGIC_HOME"] = str(home)
    try:
        if runtime is not None:
            from ..jupyter.kernelspec import write_spec

            kernels = Path(tmp.name) / "kernels"
            kernel_name = write_spec(runtime, kernels).name
            child_env["JUPYTER_PATH"] = os.pathsep.join([tmp.name] + [p for p in [child_env.get("JUPYTER_PATH")] if p])
        params_file = Path(tmp.name) / "parameters.yml"
        fd = os.open(params_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(parameters or {}, f)
        argv = [sys.executable, "-m", "papermill", str(source), str(output), "-f", str(params_file),
                "--progress-bar" if on_cell else "--no-progress-bar", "--log-level", "ERROR",
                # papermill otherwise rewrites the whole output notebook before and after every
                # cell (O(cells) per cell); it still autosaves every 30 s and at the end.
                "--no-request-save-on-cell-execute"]
        if kernel_name:
            argv += ["-k", kernel_name]
        if cwd:
            argv += ["--cwd", cwd]
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            stderr = _wait(proc, timeout, on_cell)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            end_gracefully(proc)
            rc, stderr = -1, f"timed out after {timeout:g} s"
        except BaseException:  # KeyboardInterrupt: let papermill shut its kernel down first
            end_gracefully(proc)
            raise
        duration = time.monotonic() - t0
    finally:
        if isolate:
            _stop_leftovers(home)
        tmp.cleanup()
    nb: dict[str, Any] = {}
    try:
        nb = json.loads(output.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    error = first_error(nb, usage_errors=rc != 0) if nb else ""
    if rc != 0 and not error:
        lines = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()]
        error = lines[-1] if lines else f"papermill exited with code {rc}"
    status = "ok" if rc == 0 and not error else "failed"
    return RunResult(str(output), status, duration, error if status != "ok" else "", recorded_values(nb) if nb else {})


# papermill's own progress bar (tqdm on the child's stderr): "Executing:  40%|####  | 2/5 [00:01<..."
_CELLS = re.compile(r"\|\s*(\d+)/(\d+) \[")


def _wait(proc: subprocess.Popen, timeout: float | None, on_cell: Callable[[int, int], None] | None) -> str:
    """Wait for papermill; return its stderr without progress-bar redraws. Cell counts read from
    its bar go to ``on_cell`` from this thread (a notebook display is updated by its own thread)."""
    events: queue.Queue[tuple[int, int]] = queue.Queue()
    kept: list[str] = []

    def read() -> None:
        pending = ""
        fd = proc.stderr.fileno()  # type: ignore[union-attr]
        while chunk := os.read(fd, 65536):
            pending += chunk.decode(errors="replace")
            *parts, pending = re.split(r"[\r\n]", pending)
            for part in parts:
                m = _CELLS.search(part)
                if m:
                    events.put((int(m.group(1)), int(m.group(2))))
                elif part.strip():
                    kept.append(part)
        if pending.strip():
            kept.append(pending)

    reader = threading.Thread(target=read, name="airavata-papermill-stderr", daemon=True)
    reader.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while reader.is_alive() or not events.empty():
        try:
            done, total = events.get(timeout=0.2)
            if on_cell:
                on_cell(done, total)
        except queue.Empty:
            pass
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout or 0)
    proc.wait(timeout=None if deadline is None else max(deadline - time.monotonic(), 1))
    proc.stderr.close()  # type: ignore[union-attr]
    return "\n".join(kept)


def end_gracefully(proc: subprocess.Popen) -> None:
    """SIGINT (papermill then shuts its kernel down), then terminate, then kill, with short waits."""
    import signal

    for step in (lambda: proc.send_signal(signal.SIGINT), proc.terminate, proc.kill):
        try:
            step()
            proc.wait(timeout=5)  # stderr is drained by _wait's reader thread
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def _stop_leftovers(home: Path) -> None:
    """Stop every runtime a run left alive in its private home."""
    if not (home / "runtimes").is_dir():
        return
    from ..manager import RuntimeManager
    from ..runtime import RuntimeStore

    manager = RuntimeManager(store=RuntimeStore(home), warn=lambda text: None)
    try:
        manager.stop_all()
    except Exception as e:  # noqa: BLE001 - cleanup must not hide the run's own result
        print(f"airavata-magic: could not stop a runtime left by the run: {e}", file=sys.stderr)
    finally:
        manager.close()
