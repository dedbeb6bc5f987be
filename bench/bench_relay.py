"""The relay's own cost, measured in one run against its baselines.

1. Trivial cell (``1+1``): from a client of the notebook kernel, time the cell routed to a local
   runtime (A), the same cell run in the notebook kernel itself (B), and a raw jupyter_client round
   trip straight to the runtime's kernel (C). The relay's own cost is A - B - C (medians).
   Goal: <= 0.5 ms.
2. Streamed output: a cell printing 50 MB in 1 KB lines, through the relay vs raw jupyter_client
   straight to the runtime's kernel. Goal: relay throughput >= 0.8x raw.

Usage: python bench/bench_relay.py [--runs 500] [--mb 50] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jupyter_client import BlockingKernelClient  # noqa: E402

from tests.conftest import NotebookKernel  # noqa: E402  (the same real-kernel driver the tests use)


def roundtrip(kc, code: str) -> tuple[float, int]:
    """Send a cell, wait for its execute_reply and its idle status; return seconds and the
    number of stream characters seen."""
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


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bench-relay-")
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": home, "PYTHONPATH": str(ROOT)}
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    nb = NotebookKernel(env, Path(home))
    try:
        nb.ok("%request_runtime bench --resource local")
        nb.ok("%wait_for_runtime bench")
        conn = json.loads((Path(home) / "runtimes" / "bench.json").read_text())["backend_state"]["connection_file"]
        raw = BlockingKernelClient(connection_file=conn)
        raw.load_connection_file()
        raw.start_channels()
        raw.wait_for_ready(timeout=30)
        kc = nb.kc
        routed, local, direct = [], [], []
        block = 50
        for _ in range(max(1, a.runs // block)):
            nb.ok("%switch_runtime bench")
            for _ in range(3):
                roundtrip(kc, "1+1")  # settle
            routed += [roundtrip(kc, "1+1")[0] for _ in range(block)]
            nb.ok("%switch_runtime local")
            local += [roundtrip(kc, "1+1")[0] for _ in range(block)]
            direct += [roundtrip(raw, "1+1")[0] for _ in range(block)]
        ms = lambda x: x * 1000  # noqa: E731
        A, B, C = (statistics.median(v) for v in (routed, local, direct))
        print(f"trivial cell, {len(routed)} runs each (median / p95 ms):")
        print(f"  A routed to runtime via relay : {ms(A):7.3f} / {ms(pct(routed, .95)):7.3f}")
        print(f"  B local in notebook kernel    : {ms(B):7.3f} / {ms(pct(local, .95)):7.3f}")
        print(f"  C raw jupyter_client -> runtime: {ms(C):7.3f} / {ms(pct(direct, .95)):7.3f}")
        print(f"  relay's own cost A - B - C    : {ms(A - B - C):7.3f} ms (goal <= 0.5 ms); "
              f"ratio A / (B + C) = {A / (B + C):.3f}")
        print(f"  p95 relay cost (p95A - p95B - p95C): {ms(pct(routed, .95) - pct(local, .95) - pct(direct, .95)):7.3f} ms")

        lines = a.mb * 1024
        code = f"line = 'x' * 1023\nfor _ in range({lines}):\n    print(line)"
        relay_t, raw_t = [], []
        nb.ok("%switch_runtime bench")
        for _ in range(a.repeats):
            t, n = roundtrip(kc, code)
            assert n >= lines * 1024, (n, lines * 1024)
            relay_t.append(t)
            t, n = roundtrip(raw, code)
            assert n >= lines * 1024
            raw_t.append(t)
        nb.ok("%switch_runtime local")
        R, W = statistics.median(relay_t), statistics.median(raw_t)
        print(f"streamed output, {a.mb} MB in 1 KB lines, {a.repeats} runs each (median):")
        print(f"  through relay : {R:6.2f} s = {a.mb / R:6.1f} MB/s")
        print(f"  raw (direct)  : {W:6.2f} s = {a.mb / W:6.1f} MB/s")
        print(f"  relay throughput / raw = {W / R:.3f}x (goal >= 0.8x)")
        raw.stop_channels()
    finally:
        try:
            nb.run("%stop_runtime --all", timeout=30)
        finally:
            nb.shutdown()


if __name__ == "__main__":
    main()
