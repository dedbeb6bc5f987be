"""Benchmarks for sessions (issue 4). Prints our figure beside a baseline measured in the same run.

1. Journal cost per cell at cell 10 and at cell 1000 of one session: the recorder's real write path
   (redaction + one append to the notebook file) versus the baseline of rewriting the whole
   notebook atomically after each cell (nbformat.write to a temp file + rename).
   Goal: <= 2 ms per cell, and cell 1000 <= 2x cell 10.
   Also end to end: a printing cell in a real notebook kernel at cell 10 and 1000, recording on
   versus the same kernel with no session (everything the user waits for, listener included).
2. papermill replay of an exported 100-cell session (as ``airavata-magic session replay`` runs it:
   papermill without its save-before-and-after-every-cell) versus nbclient executing the same
   100 cells directly (goal: <= 1.2x). Papermill's default, for reference, is printed too.

Run: .venv/bin/python bench/bench_sessions.py [--repeats N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airavata_magic.sessions import export, journal  # noqa: E402
from airavata_magic.sessions.redact import Redactor  # noqa: E402
from common import roundtrip, start_kernel, stop_kernel  # noqa: E402


def _outputs(i: int) -> list[dict]:
    # A typical small cell: a line of stdout and a result with text and HTML.
    return [{"output_type": "stream", "name": "stdout", "text": f"step {i}: loss={1 / (i + 1):.6f}\n"},
            {"output_type": "execute_result", "execution_count": i, "metadata": {},
             "data": {"text/plain": f"array([{i}, {i + 1}, {i + 2}])", "text/html": f"<pre>{i}</pre>"}}]


def _code(i: int) -> str:
    return f"loss = train_step(model, batch_size=64, step={i})\nprint(f'step {{{i}}}: loss={{loss:.6f}}')\nloss"


def journal_costs(n_cells: int, probes: tuple[int, ...], folder: Path) -> dict[int, list[float]]:
    """Per-cell seconds of the recorder's write path (what it does for each finished cell:
    redact the code, then the outputs, then append one cell to the journal), at the probes."""
    store = journal.SessionStore(folder)
    j = journal.JournalFile(store.path("bench"), journal.new_metadata("bench"))
    redactor = Redactor()
    out: dict[int, list[float]] = {p: [] for p in probes}
    for i in range(1, n_cells + 1):
        code, outputs, started = _code(i), _outputs(i), time.time()
        t = time.perf_counter()
        meta = {"runtimes": ["local"], "status": "ok", "started": round(started, 3), "duration": 0.001}
        j.append(journal.new_code_cell(redactor.code(code), [redactor.output(o) for o in outputs], i, meta))
        dt = time.perf_counter() - t
        for p in probes:
            if abs(i - p) <= 2:  # five cells around each probe
                out[p].append(dt)
    j.close()
    return out


def baseline_costs(n_cells: int, probes: tuple[int, ...], folder: Path) -> dict[int, list[float]]:
    """Rewrite the whole notebook atomically after each cell (what a naive journal does)."""
    nb = nbformat.v4.new_notebook()
    path = folder / "baseline.ipynb"
    out: dict[int, list[float]] = {p: [] for p in probes}
    for i in range(1, n_cells + 1):
        t = time.perf_counter()
        c = nbformat.v4.new_code_cell(_code(i))
        c.outputs = [nbformat.from_dict(o) for o in _outputs(i)]
        nb.cells.append(c)
        if not any(abs(i - p) <= 2 for p in probes):
            continue  # the rewrite is only timed around the probes (the bench would take minutes)
        tmp = folder / ".baseline.tmp"
        with open(tmp, "w") as f:
            nbformat.write(nb, f, version=4)
        os.replace(tmp, path)
        dt = time.perf_counter() - t
        for p in probes:
            if abs(i - p) <= 2:
                out[p].append(dt)
    return out


def bench_journal(repeats: int) -> None:
    probes = (10, 1000)
    ours: dict[int, list[float]] = {p: [] for p in probes}
    base: dict[int, list[float]] = {p: [] for p in probes}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            for p, v in journal_costs(1002, probes, Path(d)).items():
                ours[p] += v
        with tempfile.TemporaryDirectory() as d:
            for p, v in baseline_costs(1002, probes, Path(d)).items():
                base[p] += v
    print("journal cost per cell (ms): ours = redaction + one append; baseline = full atomic rewrite")
    print(f"{'cell':>6} {'ours p50':>9} {'ours p95':>9} {'base p50':>9} {'base p95':>9} {'ours/base':>9}")
    med = {}
    for p in probes:
        o, b = sorted(ours[p]), sorted(base[p])
        med[p] = statistics.median(o)
        print(f"{p:>6} {statistics.median(o) * 1e3:9.3f} {o[int(0.95 * (len(o) - 1))] * 1e3:9.3f} "
              f"{statistics.median(b) * 1e3:9.3f} {b[int(0.95 * (len(b) - 1))] * 1e3:9.3f} "
              f"{statistics.median(o) / statistics.median(b):9.3f}")
    print(f"cell 1000 / cell 10 (ours): {med[1000] / med[10]:.2f}x   (goal <= 2x; each <= 2 ms)")


def bench_end_to_end(n_cells: int = 1000) -> None:
    """Two real notebook kernels side by side, one recording a session, one not; each printing
    cell runs on both in turn, so both see the same machine load (this machine is shared)."""
    probes = (10, n_cells)
    with tempfile.TemporaryDirectory() as d:
        os.environ["AIRAVATA_MAGIC_HOME"] = str(Path(d) / "home")
        kernels = {"recording": start_kernel(), "baseline": start_kernel()}
        try:
            for _, kc in kernels.values():
                roundtrip(kc, "%load_ext airavata_magic")
            roundtrip(kernels["recording"][1], "%session start e2e")
            times = {mode: {p: [] for p in probes} for mode in kernels}
            every: dict[str, list[float]] = {mode: [] for mode in kernels}
            for i in range(1, n_cells + 10):
                for mode, (_, kc) in kernels.items():
                    dt = roundtrip(kc, f"print({i})")[0]
                    every[mode].append(dt)
                    for p in probes:
                        if abs(i - p) <= 9:
                            times[mode][p].append(dt)
            roundtrip(kernels["recording"][1], "%session stop")
        finally:
            for km, kc in kernels.values():
                stop_kernel(km, kc)
    print("end to end, a printing cell in a real notebook kernel (ms, median of the cells within 9 of each probe)")
    print(f"{'cell':>6} {'recording':>10} {'baseline':>9} {'ratio':>6}")
    for p in probes:
        r, b = statistics.median(times["recording"][p]), statistics.median(times["baseline"][p])
        print(f"{p:>6} {r * 1e3:10.2f} {b * 1e3:9.2f} {r / b:6.2f}")
    r, b = statistics.median(every["recording"]), statistics.median(every["baseline"])
    diff = statistics.median(x - y for x, y in zip(every["recording"], every["baseline"]))
    print(f"{'all':>6} {r * 1e3:10.2f} {b * 1e3:9.2f} {r / b:6.2f}   recording's own cost per cell "
          f"(median of paired differences): {diff * 1e3:+.2f} ms")


def _session_nb(n: int) -> dict:
    meta = journal.new_metadata("replay")
    cells = [journal.new_code_cell(f"x{i} = {i} * 2\nprint('cell', {i}, x{i})", [], i,
                                   {"runtimes": ["local"], "status": "ok"}) for i in range(n)]
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def bench_replay(repeats: int) -> None:
    import papermill
    from nbclient import NotebookClient

    session = _session_nb(100)
    with tempfile.TemporaryDirectory() as d:
        os.environ["AIRAVATA_MAGIC_HOME"] = str(Path(d) / "home")
        exported = Path(d) / "exported.ipynb"
        export.write(export.build(session), str(exported))
        plain = nbformat.v4.new_notebook()
        plain.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        plain.cells = [nbformat.v4.new_code_cell(c["source"]) for c in session["cells"]]
        ours, base, default, same = [], [], [], []
        for _ in range(repeats):
            # As `airavata-magic session replay` runs it (runner.py): no full-notebook save per cell.
            t = time.perf_counter()
            papermill.execute_notebook(str(exported), str(Path(d) / "out.ipynb"), progress_bar=False,
                                       log_output=False, kernel_name="python3", request_save_on_cell_execute=False)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            papermill.execute_notebook(str(exported), str(Path(d) / "out.ipynb"), progress_bar=False,
                                       log_output=False, kernel_name="python3")
            default.append(time.perf_counter() - t)
            nb = nbformat.from_dict(nbformat.reads(nbformat.writes(plain), as_version=4))
            t = time.perf_counter()
            NotebookClient(nb, kernel_name="python3", timeout=60).execute()
            base.append(time.perf_counter() - t)
            nb = nbformat.read(exported, as_version=4)
            t = time.perf_counter()
            NotebookClient(nb, kernel_name="python3", timeout=60).execute()
            same.append(time.perf_counter() - t)
    o, b = statistics.median(ours), statistics.median(base)
    print("replay of a 100-cell session (s): papermill on the export vs nbclient on the same 100 cells")
    print(f"  ours (papermill, export) median {o:.3f}  p95 {sorted(ours)[int(0.95 * (len(ours) - 1))]:.3f}")
    print(f"  base (nbclient, plain)   median {b:.3f}  p95 {sorted(base)[int(0.95 * (len(base) - 1))]:.3f}")
    print(f"  ratio ours/base: {o / b:.3f}x   (goal <= 1.2x; the base has no extension to load)")
    sm = statistics.median(same)
    print(f"  nbclient on the exported notebook itself: median {sm:.3f}; papermill/nbclient {o / sm:.3f}x")
    dm = statistics.median(default)
    print(f"  for reference, plain `papermill export.ipynb out.ipynb` (saves the notebook around every cell): "
          f"median {dm:.3f}, {dm / b:.3f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cells", type=int, default=1000, help="cells of the end-to-end run (probes at 10 and this)")
    ap.add_argument("--only", choices=("journal", "e2e", "replay"), help="run one part only")
    a = ap.parse_args()
    if a.only in (None, "journal"):
        bench_journal(a.repeats)
        print()
    if a.only in (None, "e2e"):
        bench_end_to_end(a.cells)
        print()
    if a.only in (None, "replay"):
        bench_replay(a.repeats)


if __name__ == "__main__":
    main()
