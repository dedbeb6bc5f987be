"""What the Python API adds per call, measured against the manager call it wraps, on a local runtime.

    python bench/bench_api.py [--repeats 200]

Prints, per trivial cell: the manager's own ``run`` (baseline), ``Runtime.run`` (the API: handle,
sink, result conversion), and ``Runtime.run`` while a script session journals every call; each
as a median with the ratio to the baseline.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def interleaved_ms(a, b, repeats: int) -> tuple[float, float]:
    """Medians of ``a`` and ``b`` timed in alternation (so machine load hits both alike)."""
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(ta) * 1000, statistics.median(tb) * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=200)
    args = p.parse_args()
    os.environ["AIRAVATA_MAGIC_HOME"] = tempfile.mkdtemp(prefix="bench-api-")
    import airavata_magic as am
    from airavata_magic.api.runtimes import ScriptSink

    rt = am.request_runtime("bench-api", resource="local", keep=False)
    rt.wait(timeout=120, progress=False)
    manager = am.get_manager()
    sink = ScriptSink(on_output=lambda name, text: None)
    for _ in range(20):  # warm up both paths
        manager.run(["bench-api"], "1", sink)
        rt.run("1")
    def raw():
        manager.run(["bench-api"], "1", sink)

    def api():
        rt.run("1")

    base, plain = interleaved_ms(raw, api, args.repeats)
    am.session.start(f"bench-{os.getpid()}")  # manager.run is not an API call: never journaled
    base2, recorded = interleaved_ms(raw, api, args.repeats)
    am.session.stop()
    rt.stop()
    print(f"trivial cell, median of {args.repeats}, each pair timed in alternation:")
    print(f"  manager.run (baseline) {base:7.3f} ms | Runtime.run (API)         {plain:7.3f} ms  x{plain / base:.2f}")
    print(f"  manager.run (baseline) {base2:7.3f} ms | Runtime.run, session on   {recorded:7.3f} ms  x{recorded / base2:.2f}")

if __name__ == "__main__":
    main()
