"""Progress shown in place: one notebook display updated, or one tqdm bar on the CLI's stderr.

Both are ``api.Progress`` callbacks: ``(run, {task: TaskStatus}) -> None``.
"""
from __future__ import annotations

import html
import time
from typing import Any

from .engine import FAILED, STATES, TaskStatus
from .record import FanoutRun


def counts(statuses: dict[int, TaskStatus]) -> dict[str, int]:
    """Tasks per state, every state present (0 when none)."""
    out = {s: 0 for s in STATES}
    for st in statuses.values():
        out[st.state] = out.get(st.state, 0) + 1
    return out


def table_bundle(run: FanoutRun, statuses: dict[int, TaskStatus], elapsed: float) -> dict[str, str]:
    """The live table as a MIME bundle: counts by state, then each failed task with its stderr tail."""
    c = counts(statuses)
    head = f"fan-out {run.run_id} on {run.resource} ({run.kind}): {len(statuses)} task(s), {elapsed:.0f} s"
    text = [head, "  ".join(f"{k}: {v}" for k, v in c.items())]
    cells = "".join(f"<th>{k}</th>" for k in c) + "</tr><tr>" + "".join(f"<td>{v}</td>" for v in c.values())
    body = f"<p>{html.escape(head)}</p><table><tr>{cells}</tr></table>"
    failed = [s for s in sorted(statuses.values(), key=lambda s: s.task) if s.state == FAILED]
    if failed:
        rows = []
        for s in failed[:20]:
            tail = s.stderr_tail.strip().splitlines()[-3:] if s.stderr_tail else []
            text.append(f"FAILED {run.names[s.task]}: {s.detail}" + ("\n    " + "\n    ".join(tail) if tail else ""))
            rows.append(f"<tr><td>{html.escape(run.names[s.task])}</td><td>{html.escape(s.detail)}</td>"
                        f"<td><pre>{html.escape(chr(10).join(tail))}</pre></td></tr>")
        if len(failed) > 20:
            text.append(f"... and {len(failed) - 20} more failed")
        body += "<table><tr><th>failed input</th><th>why</th><th>stderr tail</th></tr>" + "".join(rows) + "</table>"
    return {"text/plain": "\n".join(text), "text/html": body}


class NotebookTable:
    """One display, created on the first update and updated in place after that."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._started = time.monotonic()
        self.run_id: str | None = None  # the run shown (an interrupted %fanout names it)

    def __call__(self, run: FanoutRun, statuses: dict[int, TaskStatus]) -> None:
        from IPython.display import display

        self.run_id = run.run_id
        bundle = table_bundle(run, statuses, time.monotonic() - self._started)
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


class TqdmBar:
    """A tqdm bar on stderr: finished tasks out of all, with the counts as its postfix."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, run: FanoutRun, statuses: dict[int, TaskStatus]) -> None:
        from tqdm import tqdm

        c = counts(statuses)
        if self._bar is None:
            self._bar = tqdm(total=len(statuses), desc=run.run_id, unit="task", leave=True)
        self._bar.n = c["done"] + c["failed"]
        self._bar.set_postfix(c, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
