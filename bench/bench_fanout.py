"""Benchmarks of fan-out and scale on the loopback test bed (starts it, or reuses a running one).

    python bench/bench_fanout.py [--n 64] [--repeats 3] [--gather 1000] [--skip-scale]

Each figure is printed beside its baseline measured in the same run, as medians, with the ratio:

1. n inputs already on the cluster fanned out with ``fanout.run`` (list file, ONE array over SSH,
   state polled until every task is done) versus a bare ``sbatch --array`` of the same one-line
   task over the same list, polled with ``squeue`` on the same schedule. Submit to all done;
   goal <= 1.1x. The gather (outputs brought back and read) is reported apart. The task is a tiny
   stdlib script, so the figure is the orchestration's, not an algorithm's.
2. gathering N result directories (filtered.npy, info_df.pkl, header.pkl, exit) into one
   DataFrame with ``gather_run`` (checks every file, names bad ones) versus a bare
   ``pd.concat(pd.read_pickle(...))`` loop over the same directories; time and peak memory.
3. the scale table for world sizes 1, 2, 4 (ranks started by srun; 2 cores, so efficiency is
   not the point: a correct table is).
"""
from __future__ import annotations

import argparse
import os
import pickle
import shlex
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airavata_magic.fanout import api  # noqa: E402
from airavata_magic.fanout.results import gather_run  # noqa: E402
from airavata_magic.fanout.record import FanoutRun  # noqa: E402
from airavata_magic.fanout.slurm import SlurmEngine  # noqa: E402
from airavata_magic.profile import load_profile  # noqa: E402
from tests.slurm import testbed  # noqa: E402

TINY_TASK = "import sys, pathlib; p = pathlib.Path(sys.argv[2]); p.mkdir(parents=True, exist_ok=True); (p / 'seen').write_text(open(sys.argv[1]).read())\n"


def ratio_row(what: str, ours: list[float], base: list[float], unit: str = "s") -> None:
    o, b = statistics.median(ours), statistics.median(base)
    print(f"{what:<46} ours {o:8.3f} {unit}   baseline {b:8.3f} {unit}   ratio {o / b:5.2f}x  (n={len(ours)})")


def bench_array(profile: str, n: int, repeats: int) -> None:
    engine = SlurmEngine(load_profile(profile).resource("hpc"))
    wd = engine.backend.work_dir()
    base = f"{wd}/bench-fanout"
    py = engine.backend.python
    rc, _, err = engine.run(
        f"set -e; rm -rf {shlex.quote(base)}; mkdir -p {shlex.quote(base)}/in; cd {shlex.quote(base)}; "
        f"for i in $(seq 0 {n - 1}); do echo $i > in/in-$i.txt; done; cat > task.py", stdin=TINY_TASK)
    assert rc == 0, err
    alg = f"hpc:{base}/task.py"
    # the bare array: the same list, the same task, logs per task
    bare = (f"#!/bin/bash\n#SBATCH --output={base}/bare/%A_%a.log\n"
            f"line=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {base}/bare.lst)\n"
            f"{shlex.quote(py)} {base}/task.py \"$line\" {base}/bare/out-$SLURM_ARRAY_TASK_ID\n")
    engine.run(f"mkdir -p {base}/bare && ls -1 {base}/in/*.txt > {base}/bare.lst && cat > {base}/bare.sh", stdin=bare)
    ours, baseline, gathers = [], [], []
    for rep in range(repeats):
        for which in (("ours", "bare") if rep % 2 == 0 else ("bare", "ours")):  # alternate: no order bias
            if which == "ours":
                done_at: list[float] = []

                def progress(run, statuses):
                    if all(s.state in ("done", "failed") for s in statuses.values()) and not done_at:
                        done_at.append(time.perf_counter())

                t0 = time.perf_counter()
                res = api.run(alg, f"hpc:{base}/in/*.txt", resource="hpc", parallel=16, file=profile,
                              output=tempfile.mkdtemp(prefix="bench-fo-"), progress=progress, timeout=600)
                t1 = time.perf_counter()
                ours.append(done_at[0] - t0)
                gathers.append(t1 - done_at[0])
                assert len(res.failed) == n  # the tiny task writes no standard results: all reported, none lost
            else:
                t0 = time.perf_counter()
                rc, out, err = engine.run(f"rm -rf {base}/bare/*; sbatch --parsable --array=0-{n - 1}%16 {base}/bare.sh")
                jid = out.strip().split(";")[0]
                interval = 0.3
                while True:  # the same polling schedule as fanout.wait_for
                    _, q, _ = engine.run(f"squeue -h -r -j {jid} -o %i")
                    if not q.strip():
                        break
                    time.sleep(interval)
                    interval = min(interval * 1.3, 3.0)
                baseline.append(time.perf_counter() - t0)
                _, cnt, _ = engine.run(f"ls {base}/bare | grep -c '^out-'")
                assert int(cnt.strip() or 0) == n
    engine.close()
    ratio_row(f"{n} inputs: submit -> all done (array of 16)", ours, baseline)
    print(f"{'  gather after all done (fetch + read)':<46} {statistics.median(gathers):8.3f} s (median)")


def bench_gather(count: int, repeats: int) -> None:
    import numpy as np
    import pandas as pd

    root = Path(tempfile.mkdtemp(prefix="bench-gather-"))
    rng = np.random.default_rng(0)
    for t in range(count):
        d = root / f"{t:05d}"
        d.mkdir()
        np.save(d / "filtered.npy", rng.random((16, 64), dtype=np.float32))
        pd.DataFrame({"time_index": range(8), "frequency_mhz": rng.random(8), "snr": rng.random(8)}).to_pickle(d / "info_df.pkl")
        with open(d / "header.pkl", "wb") as f:
            pickle.dump({"fch1": 6000.0, "foff": -2.8e-6, "nchans": 64}, f)
        (d / "exit").write_text("0\n")
    run = FanoutRun(run_id="fo-bench", algorithm="a", algorithm_source="a", inputs=[f"in-{t}" for t in range(count)],
                    names=[f"in-{t}" for t in range(count)], resource="local", kind="local", parallel=1, output=str(root))
    def ours_once() -> None:
        res = gather_run(run)
        assert len(res.hits) == 8 * count and res.failed.empty

    def bare_once() -> None:  # the same three files per directory, no checks, one concat
        frames, arrays, headers = [], [], []
        for t in range(count):
            d = root / f"{t:05d}"
            frames.append(pd.read_pickle(d / "info_df.pkl"))
            arrays.append(np.load(d / "filtered.npy"))
            with open(d / "header.pkl", "rb") as f:
                headers.append(pickle.load(f))
        assert len(pd.concat(frames, ignore_index=True)) == 8 * count

    ours, base = [], []
    for _ in range(repeats):
        for fn, out in ((ours_once, ours), (bare_once, base)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    mem = []
    for fn in (ours_once, bare_once):  # peak memory in a separate pass: tracemalloc slows the code down
        tracemalloc.start()
        fn()
        mem.append([tracemalloc.get_traced_memory()[1] / 2**20])
        tracemalloc.stop()
    ratio_row(f"gather {count} result directories", ours, base)
    ratio_row("  peak memory (tracemalloc)", mem[0], mem[1], unit="MB")


def bench_scale(profile: str) -> None:
    from tests.fanout.task_venv import ensure_task_venv
    import yaml

    doc = yaml.safe_load(Path(profile).read_text())
    doc["resources"]["hpc"]["python"] = ensure_task_venv()
    doc["resources"]["hpc"]["cost"] = {"cpu_hour": 0.05}
    p = Path(tempfile.mkdtemp(prefix="bench-scale-")) / "cybershuttle.yml"
    p.write_text(yaml.safe_dump(doc))
    from airavata_magic.fanout.scale import scale_run

    res = scale_run(str(ROOT / "examples" / "fanout" / "scale_infer.py"), world_sizes="1,2,4", resource="hpc",
                    file=str(p), overcommit=True, output=str(p.parent / "out"), timeout=600)
    print("scale table (world sizes 1, 2, 4 on the 2-core test bed; cpu_hour 0.05):")
    print(res.table.to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gather", type=int, default=1000)
    ap.add_argument("--skip-scale", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("AIRAVATA_MAGIC_HOME", tempfile.mkdtemp(prefix="bench-home-"))
    tb = testbed.start()
    try:
        bench_array(str(tb.profile), a.n, a.repeats)
        bench_gather(a.gather, a.repeats)
        if not a.skip_scale:
            bench_scale(str(tb.profile))
    finally:
        tb.stop()


if __name__ == "__main__":
    main()
