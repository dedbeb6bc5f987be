"""Pieces every benchmark shares: a sink that drops output, frontend round trips, percentiles,
and a notebook kernel started as Jupyter starts one. Benchmarks import nothing from tests/.
"""
from __future__ import annotations

import queue
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class NullSink:
    """An ``OutputSink`` that drops relayed output: benchmarks measure transport and relay, not display."""

    def stream(self, label: str | None, name: str, text: str) -> None:
        pass

    def stream_packed(self, label: str | None, packed: bytes, unpack: Callable[[bytes], Any]) -> None:
        pass

    def display(self, label: str | None, msg_type: str, content: dict[str, Any]) -> None:
        pass

    def clear_output(self, label: str | None, wait: bool) -> None:
        pass

    def input(self, label: str | None, prompt: str, password: bool) -> str:
        return ""

    def comm(self, link: Any, msg_type: str, content: dict[str, Any], buffers: list,
             metadata: dict[str, Any] | None = None) -> None:
        pass


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def ms(values: list[float]) -> str:
    """``median X ms   p95 Y ms``."""
    return f"median {statistics.median(values) * 1000:7.2f} ms   p95 {pct(values, 0.95) * 1000:7.2f} ms"


def roundtrip(kc: Any, code: str) -> tuple[float, int]:
    """Run a cell from a jupyter_client frontend until its execute_reply AND its idle status
    arrived; return the seconds it took and the number of stream characters seen."""
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    replied = idle = False
    nbytes = 0
    while not (replied and idle):
        if not replied:
            try:
                r = kc.shell_channel.get_msg(timeout=1 if idle else 0)
                replied = r["parent_header"].get("msg_id") == msg_id
            except queue.Empty:
                pass
        if idle:
            continue
        try:
            m = kc.iopub_channel.get_msg(timeout=0.001 if not replied else 1)
        except queue.Empty:
            continue
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            nbytes += len(m["content"]["text"])
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            idle = True
    return time.perf_counter() - t0, nbytes


def start_kernel(env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[Any, Any]:
    """A python3 kernel of this interpreter, started and ready: ``(KernelManager, client)``."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable
    km.start_kernel(**{k: v for k, v in (("env", env), ("cwd", cwd)) if v is not None})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc


def stop_kernel(km: Any, kc: Any) -> None:
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def run_ok(kc: Any, code: str, timeout: float = 120) -> str:
    """Run a cell that must succeed; return its stdout (raises ``RuntimeError`` with its error)."""
    msg_id = kc.execute(code)
    out: list[str] = []
    error = None
    deadline = time.monotonic() + timeout
    while True:
        m = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            out.append(m["content"]["text"])
        elif m["msg_type"] == "error":
            error = f"{m['content']['ename']}: {m['content']['evalue']}"
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    while True:
        reply = kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    if error or reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell {code[:60]!r} failed: {error or reply['content'].get('evalue')}")
    return "".join(out)
