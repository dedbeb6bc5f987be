"""The session journal on disk: one nbformat v4 notebook per session, grown one cell at a time.

Layout (valid JSON and a valid notebook after every write)::

    {"cells": [
    {...cell 1 on one line...}
    ,{...cell 2...}
    ],
    "metadata": {...}, "nbformat": 4, "nbformat_minor": 5}

Adding a cell writes only the new cell line plus the short tail (``],`` and the metadata) at the
tail's offset: one ``pwrite`` whose size does not depend on how many cells came before, so the
cost per cell stays flat as a session grows. A full rewrite (temp file + rename) happens only when
an earlier cell changes (``update_display_data`` for an older display) and when a session is
opened again. Data written before a ``kill -9`` is in the page cache and survives the process;
a write torn by a machine crash is repaired on the next read (``read_session`` keeps every cell
line that parses). No fsync: the promise is about the kernel process dying, not the machine.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .. import paths
from ..errors import AiravataError, InvalidArgument

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEAD = b'{"cells": [\n'


def validate_session_name(name: str, what: str = "session") -> str:
    """Session and template names: 1-64 letters, digits, '_', '.', '-', not starting with '.'/'-'."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(f"invalid {what} name {name!r}: use 1-64 letters, digits, '_', '.', '-' "
                              "starting with a letter or digit")
    return name


def new_metadata(name: str, kernel_name: str = "python3") -> dict[str, Any]:
    """Notebook metadata of a new session journal."""
    import sys

    return {
        "kernelspec": {"name": kernel_name, "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": ".".join(map(str, sys.version_info[:3]))},
        "airavata": {"session": {"name": name, "started": time.time(), "updated": time.time(),
                                 "cells": 0, "runtimes": {}}},
    }


def _dump(obj: Any) -> bytes:
    # ASCII-only JSON on one line: byte offsets equal character offsets, newlines are escaped.
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode()


class JournalFile:
    """Writer of one session's notebook file. Not thread-safe: one writer thread."""

    def __init__(self, path: Path, metadata: dict[str, Any], cells: list[dict[str, Any]] | None = None) -> None:
        self.path = path
        self.metadata = metadata
        self._cells: list[bytes] = []  # each cell already serialized, to rewrite cheaply
        self.cells: list[dict[str, Any]] = []
        self._fd: int | None = None
        self._tail_at = 0
        self._tail_len = 0
        for c in cells or []:
            self.cells.append(c)
            self._cells.append(_dump(c))
        self.rewrite()

    @property
    def session(self) -> dict[str, Any]:
        return self.metadata["airavata"]["session"]

    def _tail(self) -> bytes:
        s = self.session
        s["cells"], s["updated"] = len(self.cells), time.time()
        return b"],\n\"metadata\": " + _dump(self.metadata) + b', "nbformat": 4, "nbformat_minor": 5}\n'

    def rewrite(self) -> None:
        """Write the whole notebook atomically (temp file + rename) and reopen it for appends."""
        body = _HEAD + b"".join((b"," if i else b"") + c + b"\n" for i, c in enumerate(self._cells))
        tail = self._tail()
        paths.write_private(self.path, body + tail, fsync=False)  # see the module docstring
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY)
        self._tail_at, self._tail_len = len(body), len(tail)

    def append(self, cell: dict[str, Any]) -> None:
        """Add one completed cell: a single write of the cell line and the new tail."""
        if self._fd is None:
            raise AiravataError(f"session journal {self.path} is closed")
        dumped = _dump(cell)
        line = (b"," if self._cells else b"") + dumped + b"\n"
        self.cells.append(cell)
        self._cells.append(dumped)
        tail = self._tail()
        os.pwrite(self._fd, line + tail, self._tail_at)
        new_end = self._tail_at + len(line) + len(tail)
        if len(tail) < self._tail_len:
            os.ftruncate(self._fd, new_end)
        self._tail_at += len(line)
        self._tail_len = len(tail)

    def replace(self, index: int, cell: dict[str, Any]) -> None:
        """Change an earlier cell (e.g. a display updated later): a full atomic rewrite."""
        self.cells[index] = cell
        self._cells[index] = _dump(cell)
        self.rewrite()

    def set_runtime(self, name: str, record: dict[str, Any]) -> None:
        """Remember how a runtime this session used was requested (written with the next cell)."""
        self.session["runtimes"][name] = record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def new_code_cell(source: str, outputs: list[dict[str, Any]], execution_count: int | None,
                  meta: dict[str, Any]) -> dict[str, Any]:
    """An nbformat v4.5 code cell as a plain dict."""
    return {"cell_type": "code", "id": uuid.uuid4().hex[:12], "source": source, "outputs": outputs,
            "execution_count": execution_count, "metadata": {"airavata": meta}}


# -- reading -------------------------------------------------------------------------------------
def read_session(path: Path) -> dict[str, Any]:
    """Read a journal as a notebook dict. A torn last write is repaired: every complete cell line
    is kept, and the file is rewritten whole."""
    raw = path.read_bytes()
    try:
        nb = json.loads(raw)
        if isinstance(nb, dict) and isinstance(nb.get("cells"), list):
            return nb
    except ValueError:
        pass
    cells, metadata = [], None
    lines = raw.split(b"\n")
    for line in lines[1:]:
        if line.startswith(b"\"metadata\": "):
            try:
                metadata = json.loads(b"{" + line + (b"" if line.endswith(b"}") else b"}"))["metadata"]
            except ValueError:
                pass
            break
        if line.startswith((b"{", b",{")):
            try:
                cells.append(json.loads(line.lstrip(b",")))
            except ValueError:
                break
        elif line.startswith(b"]"):
            continue
        else:
            break
    if metadata is None:
        metadata = new_metadata(path.stem)
    metadata.setdefault("airavata", {}).setdefault("session", {"name": path.stem, "runtimes": {}})
    metadata["airavata"]["session"]["cells"] = len(cells)
    metadata["airavata"]["session"]["repaired"] = True
    JournalFile(path, metadata, cells).close()
    return json.loads(path.read_bytes())


def read_tail_metadata(path: Path) -> dict[str, Any] | None:
    """The session metadata from the file's last line only (cheap for listing many sessions)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            tail = f.read()
        line = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return json.loads(b"{" + line)["metadata"]
    except (OSError, ValueError, KeyError):
        try:
            return read_session(path).get("metadata")
        except (OSError, ValueError):
            return None


@dataclass
class SessionInfo:
    name: str
    path: Path
    cells: int
    runtimes: list[str]
    started: float | None
    kind: str = "notebook"  # notebook | script (Python API calls) | shell (commands in a terminal)


class SessionStore:
    """``$AIRAVATA_MAGIC_HOME/sessions/NAME.ipynb``: every recorded session of this user."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = paths.private_dir((root or paths.home()) / "sessions")

    def path(self, name: str) -> Path:
        return self.root / f"{validate_session_name(name)}.ipynb"

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def read(self, name: str) -> dict[str, Any]:
        """The session's notebook as a dict; ``InvalidArgument`` if there is none."""
        p = self.path(name)
        try:
            return read_session(p)
        except FileNotFoundError:
            known = ", ".join(s.name for s in self.all()) or "none yet"
            raise InvalidArgument(f"no session named {name!r} (sessions: {known}); "
                                  f"record one with %session start {name}") from None

    def all(self) -> Iterator[SessionInfo]:
        for p in sorted(self.root.glob("*.ipynb")):
            meta = read_tail_metadata(p) or {}
            s = meta.get("airavata", {}).get("session", {})
            used = sorted(s.get("used", []) or [])
            yield SessionInfo(p.stem, p, int(s.get("cells", 0)), used, s.get("started"), s.get("kind", "notebook"))

    def table(self):
        """A pandas DataFrame of sessions: name, kind, cells, runtimes, started, path."""
        import pandas as pd

        rows = [{"name": s.name, "kind": s.kind, "cells": s.cells, "runtimes": ", ".join(s.runtimes),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started)) if s.started else None,
                 "path": str(s.path)} for s in self.all()]
        return pd.DataFrame(rows, columns=["name", "kind", "cells", "runtimes", "started", "path"])


def cells_table(nb: dict[str, Any]):
    """The cells of one session as a DataFrame: #, runtimes, status, duration, code
    (a shell session: #, cwd, exit, duration, output, command)."""
    import pandas as pd

    if nb.get("metadata", {}).get("airavata", {}).get("session", {}).get("kind") == "shell":
        from ..shell.journal import commands_table

        return commands_table(nb)

    rows = []
    for i, c in enumerate(nb.get("cells", []), 1):
        m = c.get("metadata", {}).get("airavata", {})
        src = c.get("source", "")
        rows.append({"#": i, "runtimes": ", ".join(m.get("runtimes", [])), "status": m.get("status"),
                     "duration (s)": m.get("duration"), "outputs": len(c.get("outputs", [])),
                     "code": src if isinstance(src, str) else "".join(src)})
    return pd.DataFrame(rows, columns=["#", "runtimes", "status", "duration (s)", "outputs", "code"])
