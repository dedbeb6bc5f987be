"""Fan-out and scale: one algorithm over many inputs, one script over many world sizes.

Both use the cluster's own engine, never a scheduler of ours: a Slurm job array
(``sbatch --array=0-(n-1)%N``) or a Kubernetes Indexed Job for fan-out, a process pool on
``local``; one ``srun`` job per world size for scale runs (torch.distributed, rendezvous from
the job itself).

The Python API (the magics ``%fanout`` / ``%scale_run`` and the CLI verbs ``fanout`` / ``scale``
call exactly these)::

    import airavata_magic as am
    res = am.fanout.run("detect.py", inputs="obs/*.h5", resource="hpc", parallel=4)
    res.hits, res.failed, res.run_id          # one DataFrame of all hits; the failed inputs
    am.fanout.retry(res.run_id)               # reruns only the failed inputs
    am.fanout.plot_hits(res.hits)
    table = am.fanout.scale_run("infer.py", world_sizes=[1, 2, 4], resource="hpc").table

Heavy libraries (paramiko, kubernetes, matplotlib, torch) are imported inside functions.
"""
from __future__ import annotations

from typing import Any

_API = {
    "run": "api", "gather": "api", "retry": "api", "status": "api", "cancel": "api",
    "runs": "api", "FanoutResult": "results", "plot_hits": "plot",
    "scale_run": "scale", "ScaleResult": "scale", "reduce_results": "scale", "plot_scale": "plot",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    # Lazy: ``%load_ext airavata_magic`` must stay cheap; pandas and friends load on first use.
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
