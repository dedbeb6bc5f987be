"""Scale runs: one ``torch.distributed`` job per world size, per-rank ``Results.json`` reduced to
one table (and a plot, ``plot.plot_scale``), with cost from the profile's prices.

- Slurm: one ``sbatch --ntasks=W`` job per world size, all with ``--dependency=singleton`` so they
  run one after another rather than on top of each other; the rendezvous comes from the job
  itself (the first node of the allocation, a free port found there) and ``srun
  --kill-on-bad-exit=1`` starts the ranks, so one failing rank ends the others at once.
- local: W processes on this machine, the others terminated as soon as one fails.

Each rank gets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``,
``OMP_NUM_THREADS`` (= threads per rank, recorded) and ``AIRAVATA_RESULTS_DIR``, and can import
``airavata_rank_results`` (``rank_results.py``) to write its results.
"""
from __future__ import annotations

import importlib.resources
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import InvalidArgument, RuntimeFailed
from .api import positive_int, where

COLUMNS = ["world_size", "wall_time_s", "samples", "samples_per_s", "speedup", "efficiency", "peak_memory_mb", "cost"]
HELPER = "airavata_rank_results.py"


@dataclass
class ScaleResult:
    """What ``scale_run`` returns: the table (``COLUMNS``), every rank's Results.json, where they are."""

    run_id: str
    table: Any
    ranks: Any
    output: str


def parse_world_sizes(text: str | list[int]) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]; every size a positive whole number, no repeats."""
    items = text if isinstance(text, list) else [x for x in str(text).replace(" ", "").split(",") if x]
    if not items:
        raise InvalidArgument("--world-sizes needs at least one size, e.g. 1,2,4")
    sizes = [positive_int(x, "each world size") for x in items]
    if len(set(sizes)) != len(sizes):
        raise InvalidArgument(f"--world-sizes repeats a size: {text}")
    return sorted(sizes)


def _helper_source() -> bytes:
    return (importlib.resources.files("airavata_magic.fanout") / "rank_results.py").read_bytes()


# -- reduction ---------------------------------------------------------------------------------
def reduce_results(ranks: Any, *, prices: dict[str, float] | None = None, cpus_per_rank: int = 1,
                   gpus_per_rank: int = 0) -> Any:
    """One row per world size: total throughput is unique samples over the slowest rank's time;
    speedup and efficiency are against world size 1 (efficiency = thr(N) / (N * thr(1)));
    cost = hours * (CPUs * cpu_hour + GPUs * gpu_hour) when the profile gives prices."""
    import pandas as pd

    rows = []
    for w, part in ranks.groupby("world_size"):
        wall = float(part["wall_time_s"].max())
        samples = int(part["samples"].sum())
        cost = None
        if prices:
            per_hour = w * (cpus_per_rank * prices.get("cpu_hour", 0.0) + gpus_per_rank * prices.get("gpu_hour", 0.0))
            cost = wall / 3600.0 * per_hour
        rows.append({"world_size": int(w), "wall_time_s": wall, "samples": samples,
                     "samples_per_s": samples / wall if wall > 0 else float("nan"),
                     "peak_memory_mb": float(part["memory_info"].map(lambda m: m.get("peak_rss_mb", 0.0)).max()),
                     "cost": cost})
    table = pd.DataFrame(rows).sort_values("world_size").reset_index(drop=True)
    base = table.loc[table["world_size"] == 1, "samples_per_s"]
    thr1 = float(base.iloc[0]) if len(base) else float("nan")
    table["speedup"] = table["samples_per_s"] / thr1
    table["efficiency"] = table["speedup"] / table["world_size"]
    return table[COLUMNS]


def read_rank_results(root: Path, sizes: list[int]) -> Any:
    """Every ``w<N>/rank-<r>/Results.json`` under ``root`` as one DataFrame; raises when one is missing."""
    import pandas as pd

    rows = []
    for w in sizes:
        for r in range(w):
            p = root / f"w{w}" / f"rank-{r}" / "Results.json"
            try:
                d = json.loads(p.read_text())
            except (OSError, ValueError) as e:
                raise RuntimeFailed(f"world size {w}: rank {r} wrote no readable Results.json ({e})") from None
            rows.append({**d, "world_size": w, "rank": r})
    return pd.DataFrame(rows)


def _failure(root: Path, w: int, what: str) -> RuntimeFailed:
    """The error of a failed world size, naming the rank that failed first, with its stderr."""
    ranks = sorted(root.glob(f"w{w}/rank-*"), key=lambda p: int(p.name.split("-")[1]))
    culprit = None
    for d in ranks:
        code = (d / "exit").read_text().strip() if (d / "exit").is_file() else ""
        if code and code != "0" and int(code) < 128:  # 128+N: killed after another rank failed
            culprit = (d.name.split("-")[1], code, (d / "stderr.log").read_text(errors="replace")[-2000:]
                       if (d / "stderr.log").is_file() else "")
            break
    if culprit is None:
        return RuntimeFailed(f"world size {w}: the run failed ({what})")
    rank, code, err = culprit
    last = err.strip().splitlines()[-1] if err.strip() else "no stderr"
    return RuntimeFailed(f"world size {w}: rank {rank} exited {code}: {last}", log_tail=err)


# -- the API -------------------------------------------------------------------------------------
def scale_run(script: str, *, world_sizes: list[int] | str, resource: str | None = None, runtime: str | None = None,
              gpus_per_rank: int | str = 0, threads_per_rank: int | str = 1, timeout: float = 900.0,
              file: str | None = None, output: str | None = None, overcommit: bool = False,
              progress: Callable[[str], None] | None = None) -> ScaleResult:
    """Run ``script`` once per world size with torch.distributed ranks and reduce their
    ``Results.json`` to a table. ``overcommit`` lets a Slurm job start more ranks than the
    node has CPUs (``sbatch --overcommit``: for small test nodes). Raises ``RuntimeFailed`` with
    the failing rank's stderr when a run fails; bad arguments raise before anything is submitted."""
    sizes = parse_world_sizes(world_sizes)
    gpus = int(gpus_per_rank or 0)
    if gpus < 0:
        raise InvalidArgument("--gpus-per-rank cannot be negative")
    threads = positive_int(threads_per_rank, "--threads-per-rank")
    if not script or not Path(script).expanduser().is_file():
        raise InvalidArgument(f"scale script {script!r} not found here")
    res, spec = where(resource, runtime, file)
    from .record import new_run_id

    run_id = new_run_id("sc")
    out = Path(output or run_id).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidArgument(f"--output {out}: cannot create it ({e.strerror})") from None
    say = progress or (lambda msg: None)
    if res.kind == "local":
        if gpus:
            raise InvalidArgument("--gpus-per-rank needs a slurm or kubernetes resource")
        for w in sizes:
            say(f"world size {w}: running {w} rank(s) here")
            _run_local(Path(script).expanduser().resolve(), w, threads, out, timeout)
    elif res.kind == "slurm":
        from .scale_slurm import run_slurm

        run_slurm(res, spec, Path(script).expanduser(), sizes, gpus, threads, out, run_id, timeout, overcommit, say)
    elif res.kind == "kubernetes":
        from .scale_k8s import run_k8s

        run_k8s(res, spec, Path(script).expanduser(), sizes, gpus, threads, out, run_id, timeout, say)
    else:
        raise InvalidArgument(f"scale runs go to slurm, kubernetes or local resources; {res.name} is {res.kind}")
    ranks = read_rank_results(out, sizes)
    prices = (res.settings or {}).get("cost")
    table = reduce_results(ranks, prices=prices, cpus_per_rank=threads, gpus_per_rank=gpus)
    return ScaleResult(run_id=run_id, table=table, ranks=ranks, output=str(out))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_local(script: Path, w: int, threads: int, out: Path, timeout: float) -> None:
    lib = out / "lib"
    lib.mkdir(exist_ok=True)
    (lib / HELPER).write_bytes(_helper_source())
    port = _free_port()
    procs = []
    for r in range(w):
        d = out / f"w{w}" / f"rank-{r}"
        d.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(w), LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS=str(threads), AIRAVATA_THREADS_PER_RANK=str(threads),
                   AIRAVATA_RESULTS_DIR=str(d),
                   PYTHONPATH=os.pathsep.join([str(lib), *filter(None, [os.environ.get("PYTHONPATH")])]))
        err = open(d / "stderr.log", "wb")
        procs.append((d, err, subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                                               stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)))
    deadline = time.monotonic() + timeout
    failed = False
    try:
        while any(p.poll() is None for _, _, p in procs):
            if any(p.poll() not in (None, 0) for _, _, p in procs) or time.monotonic() > deadline:
                failed = True
                break
            time.sleep(0.05)
    finally:
        for d, err, p in procs:
            if p.poll() is None:  # a rank left waiting at the rendezvous: end it
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            rc = p.returncode
            (d / "exit").write_text(f"{128 - rc if rc < 0 else rc}\n")
            err.close()
    if failed or any(p.returncode != 0 for _, _, p in procs):
        raise _failure(out, w, "timed out" if time.monotonic() > deadline else "a rank failed")
