"""Gathering: every task's standard results read back into one DataFrame, never raising because
one task failed.

The standard results of one task (BL-Reservoir's format) are ``filtered.npy`` (a NumPy stack),
``info_df.pkl`` (a pandas DataFrame of hits) and ``header.pkl`` (the observation header). A task
whose exit code is not 0, or whose results are missing or malformed, is listed in ``.failed``
with the reason and its stderr tail, by input name.
"""
from __future__ import annotations

import html
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine import STDERR_TAIL
from .record import RESULT_FILES, FanoutRun, task_dir_name

FAILED_COLUMNS = ["task", "input", "reason", "stderr_tail"]


@dataclass
class FanoutResult:
    """What ``fanout.run``/``gather``/``retry`` return (and ``%fanout`` shows)."""

    run_id: str
    hits: Any  # pandas DataFrame: every task's info_df rows, plus `input` and `task` columns
    arrays: dict[str, Any] = field(default_factory=dict)  # input -> filtered.npy
    headers: dict[str, Any] = field(default_factory=dict)  # input -> header.pkl
    failed: Any = None  # DataFrame: task, input, reason, stderr_tail
    output: str = ""
    pending: list[str] = field(default_factory=list)  # inputs still running (gathered early)

    @property
    def ok(self) -> bool:
        return len(self.failed) == 0 and not self.pending

    def summary(self) -> str:
        n_ok = len(self.arrays)
        return (f"fan-out {self.run_id}: {n_ok} task(s) gathered, {len(self.hits)} hit(s), "
                f"{len(self.failed)} failed" + (f", {len(self.pending)} still running" if self.pending else "")
                + f"; outputs in {self.output}")

    def __repr__(self) -> str:
        lines = [self.summary()]
        for row in self.failed.itertuples(index=False):
            lines.append(f"  FAILED {row.input} (task {row.task}): {row.reason}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        body = f"<p>{html.escape(self.summary())}</p>"
        if len(self.failed):
            body += "<b>failed</b>" + self.failed.to_html(index=False)
        if len(self.hits):
            body += self.hits.head(20).to_html(index=False)
        return body


def read_task(directory: Path) -> tuple[Any, Any, Any]:
    """(filtered array, hits DataFrame, header) of one task directory; raises ValueError saying
    which file is missing or malformed."""
    import numpy as np
    import pandas as pd

    try:
        arr = np.load(directory / "filtered.npy", allow_pickle=False)
    except FileNotFoundError:
        missing = [f for f in RESULT_FILES if not (directory / f).is_file()]
        raise ValueError(f"missing {', '.join(missing)}") from None
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"filtered.npy is not a NumPy array file ({e})") from None
    # The pickles come from the user's own algorithm on the user's own allocation.
    try:
        hits = pd.read_pickle(directory / "info_df.pkl")
    except FileNotFoundError:
        raise ValueError("missing info_df.pkl") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means 'malformed'
        raise ValueError(f"info_df.pkl cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(hits, pd.DataFrame):
        raise ValueError(f"info_df.pkl holds a {type(hits).__name__}, not a pandas DataFrame")
    try:
        with open(directory / "header.pkl", "rb") as f:
            header = pickle.load(f)
    except FileNotFoundError:
        raise ValueError("missing header.pkl") from None
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"header.pkl cannot be read ({type(e).__name__}: {e})") from None
    return arr, hits, header


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - STDERR_TAIL))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def gather_run(run: FanoutRun, failed_detail: dict[int, str] | None = None, pending: list[int] | None = None) -> FanoutResult:
    """Read every finished task's directory under ``run.output`` into one result.

    ``failed_detail`` carries reasons known from the scheduler (a task that never wrote an exit
    code); ``pending`` tasks are listed as still running rather than as failed."""
    import pandas as pd

    failed_detail = failed_detail or {}
    pending_set = set(pending or [])
    frames, arrays, headers, failed = [], {}, {}, []
    owners: list[tuple[str, int, int]] = []  # (input, task, hits) of each frame, in order
    for task, name in enumerate(run.names):
        if task in pending_set:
            continue
        d = Path(run.output) / task_dir_name(task)
        reason = ""
        if task in failed_detail:
            reason = failed_detail[task]
        else:
            try:
                code = (d / "exit").read_text().strip()
            except OSError:
                reason = "no exit code: the task did not finish (or its outputs were not brought back)"
            else:
                if code != "0":
                    reason = f"exit code {code}"
        if not reason:
            try:
                arr, hits, header = read_task(d)
            except ValueError as e:
                reason = f"malformed results: {e}"
            else:
                frames.append(hits)
                owners.append((name, task, len(hits)))
                arrays[name], headers[name] = arr, header
                continue
        failed.append({"task": task, "input": name, "reason": reason, "stderr_tail": _tail(d / "stderr.log")})
    if frames:
        # one concat, then the two columns at once (inserting into each small frame costs more)
        import numpy as np

        hits_df = pd.concat(frames, ignore_index=True)
        lengths = [n for _, _, n in owners]
        hits_df.insert(0, "task", np.repeat([t for _, t, _ in owners], lengths))
        hits_df.insert(0, "input", np.repeat(np.array([i for i, _, _ in owners], dtype=object), lengths))
    else:
        hits_df = pd.DataFrame(columns=["input", "task"])
    return FanoutResult(run_id=run.run_id, hits=hits_df, arrays=arrays, headers=headers,
                        failed=pd.DataFrame(failed, columns=FAILED_COLUMNS), output=run.output,
                        pending=[run.names[t] for t in sorted(pending_set)])
