"""Shared fixtures: a real notebook kernel (ipykernel via jupyter_client) with the extension loaded.

``nb.run(code)`` executes a cell as Jupyter would and returns every iopub output of that cell, in
nbformat shape, plus the execute_reply status. Nothing is mocked: remote runtimes are real kernels.
"""
from __future__ import annotations

import os
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Cell:
    """What one executed cell produced."""

    status: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)  # raw iopub messages of the cell

    def _streams(self, name: str) -> str:
        return "".join(o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == name)

    @property
    def stdout(self) -> str:
        return self._streams("stdout")

    @property
    def stderr(self) -> str:
        return self._streams("stderr")

    @property
    def text(self) -> str:
        """All text: streams, text/plain of results and displays, error lines."""
        parts = []
        for o in self.outputs:
            if o["output_type"] == "stream":
                parts.append(o["text"])
            elif o["output_type"] in ("display_data", "execute_result", "update_display_data"):
                parts.append(str(o.get("data", {}).get("text/plain", "")) + "\n")
            elif o["output_type"] == "error":
                parts.append(f"{o['ename']}: {o['evalue']}\n")
        return "".join(parts)

    @property
    def error(self) -> tuple[str, str] | None:
        for o in self.outputs:
            if o["output_type"] == "error":
                return o["ename"], o["evalue"]
        return None

    def of_type(self, output_type: str) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o["output_type"] == output_type]


class NotebookKernel:
    """A real ipykernel acting as the notebook's kernel, driven like a Jupyter frontend."""

    def __init__(self, env: dict[str, str], cwd: Path, load: bool = True) -> None:
        self.env, self.cwd = env, cwd
        self.km: KernelManager | None = None
        self.kc = None
        self.start(load)

    def start(self, load: bool = True) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.kernel_spec.argv[0] = sys.executable  # the venv's python, whatever the spec says
        self.km.start_kernel(env=self.env, cwd=str(self.cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        if load:
            cell = self.run("%load_ext airavata_magic")
            assert cell.status == "ok", cell.text

    def restart(self, load: bool = True) -> None:
        """Kill and start the notebook kernel, as 'Restart kernel' does."""
        self.shutdown()
        self.start(load)

    def shutdown(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None and self.km.has_kernel:
            self.km.shutdown_kernel(now=True)

    def run(self, code: str, timeout: float = 60, stdin: list[str] | None = None,
            allow_stdin: bool | None = None, interrupt_after: float | None = None) -> Cell:
        """Execute a cell; answer input requests from ``stdin``; optionally interrupt after N s."""
        kc = self.kc
        answers = list(stdin or [])
        msg_id = kc.execute(code, allow_stdin=bool(answers) if allow_stdin is None else allow_stdin)
        outputs: list[dict[str, Any]] = []
        messages: list[dict[str, Any]] = []
        reply = None
        idle = False
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        interrupted = False
        while reply is None or not idle:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell did not finish in {timeout} s: {code[:80]!r}; so far: {outputs}")
            if interrupt_after is not None and not interrupted and time.monotonic() - started >= interrupt_after:
                self.km.interrupt_kernel()
                interrupted = True
            if answers or (allow_stdin and stdin is not None):
                try:
                    req = kc.stdin_channel.get_msg(timeout=0)
                    if req["msg_type"] == "input_request":
                        kc.input(answers.pop(0) if answers else "")
                except queue.Empty:
                    pass
            try:
                msg = kc.iopub_channel.get_msg(timeout=0.02)
            except queue.Empty:
                msg = None
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                messages.append(msg)
                t, c = msg["msg_type"], msg["content"]
                if t == "status" and c["execution_state"] == "idle":
                    idle = True
                elif t == "stream":
                    if outputs and outputs[-1]["output_type"] == "stream" and outputs[-1]["name"] == c["name"]:
                        outputs[-1]["text"] += c["text"]
                    else:
                        outputs.append({"output_type": "stream", "name": c["name"], "text": c["text"]})
                elif t in ("display_data", "execute_result", "update_display_data", "error"):
                    out = {"output_type": t, **c}
                    outputs.append(out)
                elif t == "clear_output":
                    outputs.append({"output_type": "clear_output", "wait": c.get("wait", False)})
            if reply is None:
                try:
                    r = kc.shell_channel.get_msg(timeout=0)
                    if r["parent_header"].get("msg_id") == msg_id:
                        reply = r["content"]
                except queue.Empty:
                    pass
        return Cell(status=reply["status"], outputs=outputs, reply=reply, messages=messages)

    def ok(self, code: str, **kw: Any) -> Cell:
        """Run a cell that must succeed; fail the test with its output otherwise."""
        cell = self.run(code, **kw)
        assert cell.status == "ok", f"cell failed: {code!r}\n{cell.text}"
        return cell


@pytest.fixture
def magic_home(tmp_path: Path) -> Iterator[Path]:
    """A private AIRAVATA_MAGIC_HOME. Whatever runtime a test left running under it (a kept
    runtime, a killed notebook's) is stopped afterwards, through the same backends: local kernels
    by pid, Slurm jobs by scancel, pods by delete."""
    home = tmp_path / "home"
    home.mkdir()
    yield home
    stop_leftover_runtimes(home)


@pytest.fixture
def notebook_factory(tmp_path: Path, magic_home: Path) -> Iterator:
    """Start notebook kernels: ``notebook_factory(env={...}, cwd=path, load=True)``."""
    started: list[NotebookKernel] = []

    def make(env: dict[str, str] | None = None, cwd: Path | None = None, load: bool = True) -> NotebookKernel:
        full = dict(os.environ)
        full.pop("AIRAVATA_MAGIC_PROFILE", None)
        full["AIRAVATA_MAGIC_HOME"] = str(magic_home)
        full["PYTHONPATH"] = str(ROOT) + os.pathsep + full.get("PYTHONPATH", "")
        full.update(env or {})
        work = cwd or (tmp_path / "work")
        work.mkdir(exist_ok=True)
        nb = NotebookKernel(full, work, load)
        started.append(nb)
        return nb

    yield make
    for nb in started:
        try:
            nb.run("%stop_runtime --all", timeout=60) if nb.km and nb.km.is_alive() else None
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass
        nb.shutdown()


def stop_leftover_runtimes(home: Path) -> None:
    """Stop every live runtime recorded under an AIRAVATA_MAGIC_HOME."""
    from airavata_magic.manager import RuntimeManager
    from airavata_magic.runtime import RuntimeStore

    if not (home / "runtimes").exists():
        return
    manager = RuntimeManager(RuntimeStore(home), warn=lambda _text: None)
    try:
        for rt in manager.store.all():
            try:
                manager.stop(rt.name)
            except Exception:  # noqa: BLE001 - cleanup must go on to the next runtime
                pass
    finally:
        manager.close()


@pytest.fixture
def notebook(notebook_factory) -> NotebookKernel:
    """A notebook kernel with ``%load_ext airavata_magic`` done and a private AIRAVATA_MAGIC_HOME."""
    return notebook_factory()
