"""``%fanout`` and ``%scale_run``: parse with ``magic_arguments``, call the API, display.

``load(ip, manager)`` is called by ``airavata_magic.load_ipython_extension``.
"""
from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..usage import parse as _parse
from ..usage import user_errors as _user_errors

_ACTIONS = {"gather": 1, "status": 1, "cancel": 1, "list": 0}


def _args(magic: Any, line: str) -> Any:
    """Parse, then drop one pair of surrounding quotes from each value: IPython's argument splitter
    keeps them, and globs are written quoted (``--inputs 'data/*.h5'``) as in a shell."""
    a = _parse(magic, line)
    for key, value in vars(a).items():
        if isinstance(value, str):
            setattr(a, key, _unquote(value))
        elif isinstance(value, list):
            setattr(a, key, [_unquote(v) if isinstance(v, str) else v for v in value])
    return a


def _unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else s


@magics_class
class FanoutMagics(Magics):
    """One algorithm over many inputs; one script over many world sizes."""

    @magic_arguments()
    @argument("args", nargs="*", help="ALG.py | gather RUN_ID | status RUN_ID | cancel RUN_ID | list")
    @argument("--inputs", help="glob of inputs: 'data/*.h5', 'RESOURCE:/path/*.h5' or 'STORAGE:sub/*.h5'")
    @argument("--runtime", help="a runtime preset from the profile (its resource and settings)")
    @argument("--resource", help="a slurm, kubernetes or local resource from the profile")
    @argument("--parallel", default="4", help="tasks running at once (array throttle %%N / Job parallelism)")
    @argument("--output", help="local folder the task outputs come back to (default: a folder named after the run)")
    @argument("--retry", metavar="RUN_ID", help="rerun only the inputs that failed in RUN_ID")
    @argument("--no-wait", action="store_true", help="return at once; gather later with %%fanout gather RUN_ID")
    @argument("--timeout", type=float, help="stop waiting after S seconds (the tasks keep running)")
    @argument("--file", help="profile file")
    @line_magic
    @_user_errors
    def fanout(self, line: str) -> Any:
        """Run ``python ALG INPUT OUTDIR`` for every input as ONE Slurm array / Kubernetes Indexed
        Job / local pool, show a live table, and return the gathered result (``.hits``,
        ``.arrays``, ``.headers``, ``.failed``, ``.run_id``)."""
        from . import api
        from .live import NotebookTable

        a = _args(self.fanout, line)
        table = NotebookTable()
        if a.args and a.args[0] in _ACTIONS:
            action, rest = a.args[0], a.args[1:]
            if len(rest) != _ACTIONS[action]:
                raise UsageError(f"%fanout {action} takes {'RUN_ID' if _ACTIONS[action] else 'no arguments'}")
            if action == "list":
                return api.runs()
            if action == "status":
                return api.status(rest[0])
            if action == "cancel":
                api.cancel(rest[0])
                print(f"cancelled what still ran of {rest[0]}")
                return None
            return _interruptible(rest[0], lambda: api.gather(rest[0], wait=not a.no_wait, timeout=a.timeout,
                                                              progress=table))
        if a.retry:
            if a.args or a.inputs:
                run = api.RunStore().load(a.retry)
                if a.args and a.args != [run.algorithm_source]:
                    raise UsageError(f"--retry {a.retry}: that run used {run.algorithm_source}, not {a.args[0]}")
            return _interruptible(a.retry, lambda: api.retry(a.retry, wait=not a.no_wait, timeout=a.timeout,
                                                             progress=table))
        if len(a.args) != 1:
            raise UsageError("usage: %fanout ALG.py --inputs 'GLOB' --resource R [--parallel N]")
        return _interruptible(None, lambda: api.run(a.args[0], a.inputs, resource=a.resource, runtime=a.runtime,
                                                    parallel=a.parallel, output=a.output, wait=not a.no_wait,
                                                    timeout=a.timeout, file=a.file, progress=table), table)

    @magic_arguments()
    @argument("script", help="the script each rank runs (torch.distributed environment set)")
    @argument("--world-sizes", default="1,2,4", help="comma-separated world sizes, e.g. 1,2,4")
    @argument("--runtime", help="a runtime preset from the profile")
    @argument("--resource", help="a slurm or local resource from the profile")
    @argument("--gpus-per-rank", default="0", help="GPUs per rank (nccl when > 0, else gloo)")
    @argument("--threads-per-rank", default="1", help="CPU threads per rank (OMP_NUM_THREADS, recorded)")
    @argument("--timeout", type=float, default=900.0, help="seconds to wait for all runs")
    @argument("--file", help="profile file")
    @line_magic
    @_user_errors
    def scale_run(self, line: str) -> Any:
        """One torch.distributed run per world size; per-rank Results.json reduced to one table
        (world_size, wall_time_s, samples, samples_per_s, speedup, efficiency, peak_memory_mb, cost)
        shown with a plot of time and cost against world size."""
        from IPython.display import display

        from .plot import plot_scale
        from .scale import parse_world_sizes, scale_run

        from ..progress import Progress

        a = _args(self.scale_run, line)
        sizes = parse_world_sizes(a.world_sizes)
        with Progress(f"scale run over world sizes {','.join(map(str, sizes))}") as bar:
            result = scale_run(a.script, world_sizes=sizes, resource=a.resource, runtime=a.runtime,
                               gpus_per_rank=a.gpus_per_rank, threads_per_rank=a.threads_per_rank,
                               timeout=a.timeout, file=a.file, progress=lambda msg: bar.set(0, note=msg))
        fig = plot_scale(result.table)
        display(_png(fig))
        return result.table


def _png(fig: Any) -> Any:
    """A figure as a PNG image, whatever matplotlib backend is active (some libraries switch to Agg)."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return Image(data=buf.getvalue(), format="png")


def _interruptible(run_id: str | None, call: Any, table: Any = None) -> Any:
    try:
        return call()
    except KeyboardInterrupt:
        run_id = run_id or getattr(table, "run_id", None)
        which = f"%fanout gather {run_id}" if run_id else "%fanout list, then %fanout gather RUN_ID"
        print(f"interrupted: the tasks keep running; {which} gathers them later", flush=True)
        return None


def load(ip: Any, manager: Any) -> None:
    """Register ``%fanout`` and ``%scale_run`` (called from ``load_ipython_extension``)."""
    ip.register_magics(FanoutMagics(ip))
