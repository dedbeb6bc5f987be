"""What ``%load_ext airavata_magic`` costs a fresh kernel, against ``import IPython`` alone.

Each sample is a fresh Python process (as a fresh kernel is), timed from its start to its exit:
  A: make an IPython shell and run ``%load_ext airavata_magic``;
  B: make an IPython shell only (the baseline every kernel pays anyway).
The extension's own cost is A - B (medians); the ratio A / B is printed beside it. A and B run in
turns so that a noisy machine slows both alike. It also prints which heavy client libraries the
loaded extension imported (there should be none).

Usage: python bench/bench_load_ext.py [--runs 15]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SHELL = "from IPython.core.interactiveshell import InteractiveShell\nip = InteractiveShell.instance()\n"
LOAD = SHELL + "ip.run_line_magic('load_ext', 'airavata_magic')\n"
HEAVY = ("paramiko", "kubernetes", "fsspec", "torch", "matplotlib")


def sample(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    sample(LOAD)  # warm the file cache once for both
    with_ext, shell_only = [], []
    for _ in range(args.runs):
        with_ext.append(sample(LOAD))
        shell_only.append(sample(SHELL))
    a, b = statistics.median(with_ext), statistics.median(shell_only)
    probe = LOAD + f"import sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    print(f"%load_ext airavata_magic in a fresh process: {a * 1000:.0f} ms (median of {args.runs})")
    print(f"IPython shell alone (baseline):              {b * 1000:.0f} ms")
    print(f"extension's own cost: {(a - b) * 1000:.0f} ms; ratio {a / b:.2f}x")
    print(f"heavy libraries imported by load_ext: {heavy}")


if __name__ == "__main__":
    main()
