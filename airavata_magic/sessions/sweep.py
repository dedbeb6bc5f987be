"""Batch reruns: one papermill execution of a template per combination of a grid, in parallel.

A grid file (YAML or TOML) maps input names to lists of values::

    grid:
      lr: [0.1, 0.01]
      epochs: [1, 2, 3]

Every combination is validated against the template's inputs before anything runs. The result is
one pandas DataFrame (also written as CSV): the inputs, status, duration, the error of a failed
run (which cell and why), the output notebook, and every value the run recorded.
"""
from __future__ import annotations

import itertools
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any


from .. import paths
from ..errors import InvalidArgument
from ..progress import Progress
from .runner import RunResult, run_notebook
from .templates import Input, TemplateStore, check_value, read_values_file, resolve_parameters

MAX_RUNS = 1000


def load_grid(path: str | Path, inputs: dict[str, Input]) -> dict[str, list[Any]]:
    """Read and validate a grid: every key an input, every value a list of the declared type."""
    p, doc = read_values_file(path, "grid")
    if isinstance(doc, dict) and set(doc) == {"grid"}:
        doc = doc["grid"]
    if not isinstance(doc, dict) or not doc:
        raise InvalidArgument(f"grid {p}: expected grid: {{INPUT: [values...], ...}}")
    grid: dict[str, list[Any]] = {}
    for key, values in doc.items():
        if key not in inputs:
            raise InvalidArgument(f"grid {p}: unknown input {key!r}; inputs: {', '.join(inputs)}")
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise InvalidArgument(f"grid {p}: {key!r} has no values")
        grid[key] = [check_value(inputs[key], v, f"grid {p}") for v in values]
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def sweep(template: str, grid_path: str, *, runtime: str | None = None, parallel: int = 2,
          output_dir: str | None = None, input_file: str | None = None,
          pairs: list[tuple[str, str]] | None = None, timeout: float | None = None,
          store: TemplateStore | None = None, show_progress: bool = True):
    """Run ``template`` once per grid combination, ``parallel`` at a time; return the table.

    With ``show_progress``, runs done are shown in place (one display in a notebook, a bar on
    stderr in a terminal)."""
    import pandas as pd

    if not isinstance(parallel, int) or not 1 <= parallel <= 64:
        raise InvalidArgument(f"--parallel {parallel!r}: give a number from 1 to 64")
    if runtime is not None:
        from ..jupyter.kernelspec import resolve_preset

        resolve_preset(runtime)  # an unknown preset fails here, before anything runs
    store = store or TemplateStore()
    _, inputs = store.load(template)
    grid = load_grid(grid_path, inputs)
    base = resolve_parameters({n: i for n, i in inputs.items() if n not in grid}, input_file, pairs)
    combos = combinations(grid)
    if len(combos) > MAX_RUNS:
        raise InvalidArgument(f"grid {grid_path}: {len(combos)} combinations; at most {MAX_RUNS} per sweep")
    outdir = Path(output_dir).expanduser() if output_dir else \
        paths.private_dir(store.dir(template) / "sweeps" / time.strftime("%Y%m%d-%H%M%S"))
    outdir.mkdir(parents=True, exist_ok=True)
    width = len(str(len(combos)))

    def one(i: int, combo: dict[str, Any]) -> RunResult:
        out = outdir / f"run-{i + 1:0{width}d}.ipynb"
        return run_notebook(store.path(template), out, {**base, **combo}, runtime=runtime, timeout=timeout)

    results: list[RunResult] = [None] * len(combos)  # type: ignore[list-item]
    failed = 0
    bar = Progress(f"sweep {template}", total=len(combos), unit="runs") if show_progress else None
    try:
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="airavata-sweep") as pool:
            futures = {pool.submit(one, i, combo): i for i, combo in enumerate(combos)}
            for future in as_completed(futures):  # the display is updated from this thread only
                i = futures[future]
                results[i] = future.result()
                failed += results[i].status != "ok"
                if bar is not None:
                    bar.advance(1, note=f"run {i + 1} {results[i].status}" + (f", {failed} failed" if failed else ""))
    finally:
        if bar is not None:
            bar.close()

    value_names: list[str] = []
    for r in results:
        value_names += [k for k in r.values if k not in value_names]
    rows = []
    for i, (combo, r) in enumerate(zip(combos, results), 1):
        row: dict[str, Any] = {"run": i, **combo, "status": r.status, "duration (s)": round(r.duration, 2),
                               "error": r.error, "output": r.output}
        for k in value_names:
            row[k if k not in combo and k not in row else f"value:{k}"] = r.values.get(k)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(outdir / "sweep.csv", index=False)
    table.attrs["csv"] = str(outdir / "sweep.csv")
    return table
