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
import statistics
import tempfile
from pathlib import Path

from jupyter_client import BlockingKernelClient  # noqa: E402

from common import ROOT, pct, roundtrip, run_ok, start_kernel, stop_kernel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bench-relay-")
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": home, "PYTHONPATH": str(ROOT)}
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    km, kc = start_kernel(env, home)
    try:
        run_ok(kc, "%load_ext airavata_magic")
        run_ok(kc, "%request_runtime bench --resource local")
        run_ok(kc, "%wait_for_runtime bench")
        conn = json.loads((Path(home) / "runtimes" / "bench.json").read_text())["backend_state"]["connection_file"]
        raw = BlockingKernelClient(connection_file=conn)
        raw.load_connection_file()
        raw.start_channels()
        raw.wait_for_ready(timeout=30)
        routed, local, direct = [], [], []
        block = 50
        for _ in range(max(1, a.runs // block)):
            run_ok(kc, "%switch_runtime bench")
            for _ in range(3):
                roundtrip(kc, "1+1")  # settle
            routed += [roundtrip(kc, "1+1")[0] for _ in range(block)]
            run_ok(kc, "%switch_runtime local")
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
        run_ok(kc, "%switch_runtime bench")
        for _ in range(a.repeats):
            t, n = roundtrip(kc, code)
            assert n >= lines * 1024, (n, lines * 1024)
            relay_t.append(t)
            t, n = roundtrip(raw, code)
            assert n >= lines * 1024
            raw_t.append(t)
        run_ok(kc, "%switch_runtime local")
        R, W = statistics.median(relay_t), statistics.median(raw_t)
        print(f"streamed output, {a.mb} MB in 1 KB lines, {a.repeats} runs each (median):")
        print(f"  through relay : {R:6.2f} s = {a.mb / R:6.1f} MB/s")
        print(f"  raw (direct)  : {W:6.2f} s = {a.mb / W:6.1f} MB/s")
        print(f"  relay throughput / raw = {W / R:.3f}x (goal >= 0.8x)")
        raw.stop_channels()
    finally:
        try:
            run_ok(kc, "%stop_runtime --all", timeout=30)
        finally:
            stop_kernel(km, kc)


if __name__ == "__main__":
    main()
