"""Shell sessions on disk: the same nbformat journal as notebook sessions (``sessions/journal.py``),
marked ``kind: shell``, one code cell per command:

- ``source``: the command line as typed (secrets redacted);
- ``outputs``: one stream with its terminal output, cleaned and capped (``OUTPUT_CAP`` bytes:
  the first quarter and the last three quarters are kept, with a line saying what was left out);
- ``metadata.airavata``: ``cwd``, ``exit``, ``status`` (ok / error), ``duration``, ``started``,
  ``output_bytes`` (before the cap), ``output_cap``, ``truncated``, ``hidden_input`` (the command
  read input with echo off, e.g. a password: that input is never stored, and is redacted from
  anything recorded after it).

A recording shell also has a small state file ``.NAME.shell.json`` (recorder pid), so that
``airavata-magic session stop`` finds it from another terminal.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .. import paths

OUTPUT_CAP = 64 * 1024


def cap_output(text: str, cap: int = OUTPUT_CAP) -> tuple[str, bool]:
    """``text`` cut to about ``cap`` characters (head and tail kept), and whether it was cut."""
    if len(text) <= cap:
        return text, False
    head, tail = cap // 4, cap - cap // 4
    left_out = len(text) - head - tail
    return (text[:head] + f"\n[... {left_out} characters left out: output is capped at {cap} characters "
            "per command ...]\n" + text[-tail:]), True


def command_cell(command: str, output: str, *, cwd: str, exit_status: int, started: float, duration: float,
                 output_bytes: int, hidden_input: bool) -> dict[str, Any]:
    """One recorded command as a notebook code cell (see the module docstring)."""
    from ..sessions.journal import new_code_cell

    text, truncated = cap_output(output)
    outputs = [{"output_type": "stream", "name": "stdout", "text": text}] if text else []
    meta = {"cwd": cwd, "exit": exit_status, "status": "ok" if exit_status == 0 else "error",
            "duration": round(duration, 4), "started": started, "output_bytes": output_bytes,
            "output_cap": OUTPUT_CAP, "truncated": truncated, "hidden_input": hidden_input, "runtimes": []}
    return new_code_cell(command, outputs, None, meta)


def commands(nb: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(command, metadata)`` of each recorded command, in order."""
    out = []
    for c in nb.get("cells", []):
        if c.get("cell_type") != "code":
            continue
        src = c.get("source", "")
        out.append((src if isinstance(src, str) else "".join(src), c.get("metadata", {}).get("airavata", {})))
    return out


def commands_table(nb: dict[str, Any]):
    """The commands of a shell session as a DataFrame: #, cwd, exit, duration (s), output, command."""
    import pandas as pd

    rows = []
    for i, (cmd, m) in enumerate(commands(nb), 1):
        rows.append({"#": i, "cwd": m.get("cwd"), "exit": m.get("exit"), "duration (s)": m.get("duration"),
                     "output": f"{m.get('output_bytes', 0)} bytes" + (" (capped)" if m.get("truncated") else ""),
                     "command": cmd})
    return pd.DataFrame(rows, columns=["#", "cwd", "exit", "duration (s)", "output", "command"])


# -- which shells are recording ------------------------------------------------------------------
def state_path(store_root: Path, name: str) -> Path:
    return store_root / f".{name}.shell.json"


def write_state(store_root: Path, name: str, pid: int) -> Path:
    path = state_path(store_root, name)
    paths.write_private(path, json.dumps({"name": name, "pid": pid, "started": time.time(),
                                          "proc_start": _proc_start(pid)}), fsync=False)
    return path


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie recorder is not recording


def recording(store_root: Path) -> dict[str, int]:
    """Shell sessions being recorded now: name -> recorder pid (stale state files are removed)."""
    live: dict[str, int] = {}
    for p in store_root.glob(".*.shell.json"):
        try:
            state = json.loads(p.read_text())
            pid = int(state["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if state.get("proc_start") and _proc_start(pid) == state["proc_start"]:
            live[state["name"]] = pid
        else:
            try:
                os.unlink(p)
            except OSError:
                pass
    return live
