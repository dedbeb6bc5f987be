"""Benchmark of ``applications.list`` on a tree of 500 modulefiles (loopback test bed, real Lmod).

    python bench/bench_applications.py [--repeats N] [--modules 500]

Measured in the same run, over the same pooled SSH connection, medians of N repeats:

1. cold listing, two ways: ``list(refresh=True)`` asks Lmod's spider afresh (one login-shell
   command, spider JSON parsed into a DataFrame, both caches written): a first contact; and
   ``list()`` with this machine's cache emptied while the resource's own spider cache
   (``catalog.LMOD_QUERY``: reused while no modulefile is newer) is valid: every later new
   session. Each versus the bare ``module -t avail`` (names only), a bare ``module spider`` (the
   human-readable spider: what a user would run) and the bare spider JSON command (so our own
   cost shows), each in a login shell. Goal from the issue: cold <= 1.2x the bare ``module -t avail``.
2. cached listing (``list()``: no command) in ms. Goal: <= 5 ms.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.applications import testbed_apps  # noqa: E402
from tests.slurm import testbed  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--modules", type=int, default=500)
    args = ap.parse_args()
    tb = testbed.start()
    home = tempfile.mkdtemp(prefix="bench-apps-")
    os.environ["AIRAVATA_MAGIC_HOME"] = home
    try:
        testbed_apps.ensure_applications()
        testbed_apps.write_bench_tree(args.modules)
        from airavata_magic import applications
        from airavata_magic.applications.cache import forget
        from airavata_magic.backends.ssh_launched import target_of
        from airavata_magic.profile import load_profile
        from airavata_magic.transport.ssh import connection_for

        profile = str(tb.profile)
        res = load_profile(profile).resources["hpc"]
        conn = connection_for(target_of(res.settings))
        conn.run("true")  # connect once: every figure below reuses this connection

        def bare(script: str):
            return lambda: conn.run(["bash", "-l", "-c", script], timeout=120)

        n = len(applications.list("hpc", refresh=True, file=profile))
        print(f"{n} applications listed on hpc ({args.modules} bench modulefiles + the test tree); "
              f"median of {args.repeats}, interleaved")
        cold, warm, avail, spider, raw, cached = [], [], [], [], [], []
        for _ in range(args.repeats):  # interleaved: machine load hits all of them alike
            cold += timed(lambda: applications.list("hpc", refresh=True, file=profile), 1)
            forget("hpc")
            warm += timed(lambda: applications.list("hpc", file=profile), 1)
            avail += timed(bare("module -t avail >/dev/null 2>&1"), 1)
            spider += timed(bare("module spider >/dev/null 2>&1"), 1)
            raw += timed(bare('"$LMOD_DIR/spider" -o jsonSoftwarePage "$MODULEPATH" >/dev/null'), 1)
            cached += timed(lambda: applications.list("hpc", file=profile), 1)
        m = statistics.median
        print(f"bare `module -t avail` (names only)      {m(avail) * 1000:8.1f} ms")
        print(f"cold list, first contact (spider runs)   {m(cold) * 1000:8.1f} ms   cold/avail  = {m(cold) / m(avail):.2f}x (goal <= 1.2x)")
        print(f"cold list, resource cache valid          {m(warm) * 1000:8.1f} ms   cold/avail  = {m(warm) / m(avail):.2f}x (goal <= 1.2x)")
        print(f"bare `module spider`                     {m(spider) * 1000:8.1f} ms   cold/spider = {m(cold) / m(spider):.2f}x")
        print(f"bare Lmod spider JSON (what we run)      {m(raw) * 1000:8.1f} ms   cold/raw    = {m(cold) / m(raw):.2f}x (our own cost)")
        print(f"cached list                              {m(cached) * 1000:8.2f} ms   cached/spider = {m(cached) / m(spider):.4f}x (goal <= 5 ms)")
    finally:
        testbed_apps.remove_bench_tree()
        tb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
