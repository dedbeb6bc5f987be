"""What users see of runtimes, shared by the magics and the command line.

Pure presentation: text lines, MIME bundles and pandas DataFrames built from records and rows the
``RuntimeManager`` returns. pandas is imported inside the functions that build frames.
"""
from __future__ import annotations

import html
import re
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import pandas as pd

    from .backends.base import AuthResult
    from .runtime import Runtime

#: the columns of ``%runtimes`` / ``airavata-magic runtimes``, in order
TABLE_COLUMNS = ["name", "resource", "state", "job id", "node", "cpus", "gpus", "memory", "walltime left",
                 "held by", "current", "reason"]


def format_seconds(seconds: float | None) -> str | None:
    """``3725`` -> ``'1:02:05'``; None stays None."""
    if seconds is None:
        return None
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def auth_rows(rows: list["AuthResult"]) -> list[str]:
    """``%authenticate`` / ``airavata-magic authenticate`` output: one aligned line per resource."""
    width = max((len(r.resource) for r in rows), default=0)
    return [f"{r.resource:<{width}}  {r.kind:<10}  {'ok' if r.ok else 'FAILED'}  {r.detail}" for r in rows]


def print_state_changes() -> Callable[["Runtime", float, str], None]:
    """An ``on_update`` for ``RuntimeManager.wait()`` that prints one line each time the state or
    the reason changes."""
    last: list[tuple[str, str]] = []

    def report(rt: "Runtime", elapsed: float, log_tail: str = "") -> None:
        key = (rt.state.value, rt.reason)
        if last != [key]:
            last[:] = [key]
            why = f" ({rt.reason})" if rt.reason else ""
            print(f"[{elapsed:6.1f} s] {rt.name}: {rt.state.value}{why}", flush=True)

    return report


# What ipykernel prints to its own stdout at start-up, for a terminal user: in a runtime's log it
# is noise, and shown in a cell it reads as if the notebook should act on it.
_KERNEL_BANNER = re.compile(
    r"NOTE: When using the `ipython kernel` entry point.*?issues/\d+[^\n]*\n?"
    r"|To connect another client to this kernel, use:\s*\n\s*--existing [^\n]*\n?", re.DOTALL)


def runtime_log(tail: str) -> str:
    """A runtime's log tail as users see it: without ipykernel's start-up banner."""
    return re.sub(r"\n{3,}", "\n\n", _KERNEL_BANNER.sub("", tail)).strip("\n")


def status_bundle(rt: "Runtime", elapsed: float, tail: str = "", note: str = "") -> dict[str, str]:
    """A text + HTML bundle of one runtime's status while waiting (``%wait_for_runtime --live``);
    ``note`` is a first line (the outcome, once the wait is over)."""
    tail = runtime_log(tail)
    left = format_seconds(rt.time_left())
    fields = [("runtime", rt.name), ("resource", rt.resource), ("state", rt.state.value),
              ("reason", rt.reason or "-"), ("job id", rt.job_id or "-"), ("node", rt.node or "-"),
              ("elapsed", f"{elapsed:.1f} s")] + ([("walltime left", left)] if left else [])
    text = "  ".join(f"{k}: {v}" for k, v in fields)
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                   f"{html.escape(str(v))}</td></tr>" for k, v in fields)
    body = f"<table>{rows}</table>"
    if note:
        text, body = f"{note}\n{text}", f"<p><b>{html.escape(note)}</b></p>{body}"
    if tail:
        text += "\n" + tail
        body += f"<pre>{html.escape(tail)}</pre>"
    return {"text/plain": text, "text/html": body}


def runtime_row(rt: "Runtime", *, holders: list[int] | None, current: bool) -> dict[str, Any]:
    """One row of the runtimes table. ``holders``: pids of processes holding it (None: not asked,
    for runtimes that are over)."""
    held = None if holders is None else (", ".join(f"pid {p}" for p in holders) or "nobody")
    return {
        "name": rt.name, "resource": rt.resource, "state": rt.state.value, "job id": rt.job_id,
        "node": rt.node, "cpus": rt.spec.cpus, "gpus": rt.spec.gpus,
        "memory": f"{rt.spec.memory}M" if rt.spec.memory else None,
        "walltime left": None if rt.state.terminal else format_seconds(rt.time_left()),
        "held by": held, "current": current, "reason": rt.reason,
    }


def broken_row(name: str, reason: str) -> dict[str, Any]:
    """The row of a record that cannot be read."""
    row: dict[str, Any] = {c: None for c in TABLE_COLUMNS}
    row.update(name=name, state="broken", current=False,
               reason=f"unreadable record ({reason}); %stop_runtime {name} removes it")
    return row


def runtimes_frame(rows: list[dict[str, Any]]) -> "pd.DataFrame":
    """The runtimes table as a DataFrame with the fixed columns."""
    import pandas as pd

    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def stat_fields(rt: "Runtime") -> dict[str, Any]:
    """The record part of ``%stat_runtime``: where, what was asked for, time left."""
    info: dict[str, Any] = {"name": rt.name, "resource": rt.resource, "kind": rt.kind,
                            "state": rt.state.value, "reason": rt.reason, "job id": rt.job_id,
                            "node": rt.node, "preset": rt.preset}
    info.update({("requested node" if k == "node" else k): v for k, v in asdict(rt.spec).items()})
    info["walltime left"] = format_seconds(rt.time_left())
    info["requested at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rt.created_at))
    return info
