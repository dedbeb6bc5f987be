"""Cell routing: which part of a cell runs here and which runs on the current runtime.

Implemented as an IPython ``input_transformers_cleanup`` transformer (a documented hook; nothing
is patched). The rule (CONTRACT.md): a cell's leading lines that are this package's line magics
run locally, in order; the rest of the cell runs on the runtime that is current after them. The
rest is rewritten into one expression, ``get_ipython().run_cell_magic('run_on', NAME, CODE)``, so
that its value becomes the cell's ``Out``/``_`` exactly like a local result.
"""
from __future__ import annotations

import contextlib
import re
import shlex
from typing import Callable, Iterator

from .runtime import LOCAL

_LINE_MAGIC = re.compile(r"^%(?!%)([A-Za-z_]\w*)(.*)$")
_LOCAL_ALWAYS = {"load_ext", "reload_ext", "unload_ext"}  # loading this extension stays local


def _first_arg(args: str) -> str | None:
    try:
        parts = shlex.split(args)
    except ValueError:
        return None
    return parts[0] if parts else None


def runtime_after(magic: str, args: str, current: str) -> str:
    """The current runtime after a leading magic line has run (best static knowledge)."""
    if magic == "switch_runtime":
        name = _first_arg(args)
        return name if name else current
    if magic == "stop_runtime":
        try:
            parts = shlex.split(args)
        except ValueError:
            return current
        if "--all" in parts or current in parts:
            return LOCAL
    return current


class CellRouting:
    """The one owner of per-cell routing state, shared by the magics and the session recorder.

    ``ran_on`` names the runtimes the current cell ran on (``[]``: the notebook's own kernel); it is
    reset before every cell. While ``running_here()`` is active (``%%run_on local``) cells are not
    routed, so a local cell inside it stays local whatever runtime is current.
    """

    def __init__(self) -> None:
        self.ran_on: list[str] = []
        self._here = 0

    def reset(self, *_event_args: object) -> None:
        """Start of a cell (IPython ``pre_run_cell``): nothing has run anywhere yet."""
        self.ran_on = []

    def note_ran_on(self, names: list[str]) -> None:
        """The current cell ran on these runtimes."""
        self.ran_on = list(names)

    @contextlib.contextmanager
    def running_here(self) -> Iterator[None]:
        """Run code in the notebook's kernel, unrouted, for the duration of the block."""
        self._here += 1
        try:
            yield
        finally:
            self._here -= 1

    @property
    def enabled(self) -> bool:
        """Whether cells are routed now."""
        return self._here == 0


def make_router(get_current: Callable[[], str], line_magics: set[str], cell_magics: set[str],
                enabled: Callable[[], bool] = lambda: True) -> Callable[[list[str]], list[str]]:
    """Build the transformer. ``get_current()`` names the current runtime ('local' = here)."""

    def route(lines: list[str]) -> list[str]:
        if not lines or not enabled():
            return lines
        target = get_current()
        first = lines[0].lstrip()
        if first.startswith("%%"):
            name = first[2:].split(None, 1)[0] if len(first) > 2 else ""
            if name in cell_magics or target == LOCAL:
                return lines
        elif target == LOCAL and not first.startswith("%"):
            return lines  # fast path: a plain local cell
        i = 0
        while i < len(lines):
            stripped = lines[i].strip()
            if not stripped or stripped.startswith("#"):
                i += 1
                continue
            m = _LINE_MAGIC.match(stripped)
            if m and (m.group(1) in line_magics or
                      (m.group(1) in _LOCAL_ALWAYS and "airavata_magic" in m.group(2))):
                target = runtime_after(m.group(1), m.group(2), target)
                i += 1
                continue
            break
        rest = "".join(lines[i:])
        if target == LOCAL or not rest.strip():
            return lines
        return lines[:i] + [f"get_ipython().run_cell_magic('run_on', {target!r}, {rest!r})\n"]

    return route
