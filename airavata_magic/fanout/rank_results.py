"""For a scale script's ranks: start ``torch.distributed`` from torchrun's environment and write
``Results.json`` with Cosmic-AI's fields. Standard library only (torch imported inside), so the
file can be shipped next to a script on a cluster: ``scale_run`` puts it on the ranks'
``PYTHONPATH`` as ``airavata_rank_results``.

    from airavata_rank_results import init_distributed, unique_share, write_results
    rank, world, local_rank = init_distributed()              # gloo on CPU, nccl with GPUs, timeout
    ...
    write_results(samples=n_unique, batch_times=times, batch_size=32, device="cpu")
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from datetime import timedelta
from typing import Any

_T0 = time.monotonic()


def init_distributed(backend: str | None = None, timeout_s: float = 120.0) -> tuple[int, int, int]:
    """``init_process_group`` from ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``, always
    with a timeout (gloo can otherwise hang at the rendezvous). Returns (rank, world size, local rank)."""
    global _T0
    import torch
    import torch.distributed as dist

    threads = int(os.environ.get("AIRAVATA_THREADS_PER_RANK", os.environ.get("OMP_NUM_THREADS", "1")))
    torch.set_num_threads(threads)  # torchrun would force 1; the run records what it used
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("AIRAVATA_GPUS_PER_RANK", "0") != "0" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    _T0 = time.monotonic()  # wall time counts from a completed rendezvous
    return rank, world, int(os.environ.get("LOCAL_RANK", "0"))


def unique_share(n: int, rank: int, world: int) -> range:
    """The indices rank ``rank`` owns of ``n`` samples split the way ``DistributedSampler``
    (shuffle off) splits them, without its padding duplicates."""
    return range(rank, n, world)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_total_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def write_results(*, samples: int, batch_times: list[float], batch_size: int, device: str,
                  extra: dict[str, Any] | None = None) -> str:
    """Write ``$AIRAVATA_RESULTS_DIR/Results.json`` for this rank; returns its path.

    ``samples`` counts unique samples this rank processed (not DistributedSampler's padding);
    ``batch_times`` are seconds per batch (the median is reported: the first batch is slow)."""
    wall = time.monotonic() - _T0
    median = statistics.median(batch_times) if batch_times else 0.0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    out = {
        "rank": int(os.environ.get("RANK", "0")), "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "time_per_batch_s": median, "num_batches": len(batch_times), "batch_size": batch_size,
        "device": device, "samples": int(samples), "wall_time_s": wall,
        "throughput": samples / wall if wall > 0 else 0.0, "samples_per_second": samples / wall if wall > 0 else 0.0,
        "threads": int(os.environ.get("AIRAVATA_THREADS_PER_RANK", os.environ.get("OMP_NUM_THREADS", "1"))),
        "visible_gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "cpu_info": {"model": _cpu_model(), "count": os.cpu_count(), "host": platform.node()},
        "memory_info": {"peak_rss_mb": peak_mb, "total_mb": _mem_total_mb()},
        **(extra or {}),
    }
    d = os.environ.get("AIRAVATA_RESULTS_DIR", ".")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "Results.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    return path
