"""Progress of long work, shown in place: the one helper every magic and command uses.

In a notebook it is ONE output updated in place (``display(..., display_id=True)``), with a text
form for papermill and terminals and an HTML bar for JupyterLab; anywhere else it is a tqdm bar on
stderr. Work that cannot count (a queue wait) passes no ``total`` and shows elapsed time only.

    with Progress("copy data.h5", total=size, unit="B") as bar:
        for chunk in chunks:
            bar.advance(len(chunk))
"""
from __future__ import annotations

import html
import sys
import time
from typing import Any, TextIO

_REFRESH_S = 0.2  # at most five redraws a second: a fast loop must not flood the frontend


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (a frontend shows rich outputs)."""
    ip = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return ip is not None and getattr(ip, "kernel", None) is not None


def human(n: float, unit: str) -> str:
    """``1536, "B"`` -> ``1.5 KiB``; other units are counted plainly."""
    if unit != "B":
        return f"{n:,.0f}{(' ' + unit) if unit else ''}"
    for prefix in ("", "Ki", "Mi", "Gi", "Ti"):
        if abs(n) < 1024 or prefix == "Ti":
            return f"{n:.0f} B" if not prefix else f"{n:.1f} {prefix}B"
        n /= 1024
    return f"{n:.1f} TiB"


class Progress:
    """A progress display for one piece of work; use as a context manager or call ``close()``."""

    def __init__(self, description: str, total: float | None = None, unit: str = "", *,
                 notebook: bool | None = None, stream: TextIO | None = None) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done: float = 0
        self.note = ""
        self.started = time.monotonic()
        self._drawn = 0.0
        self._handle: Any = None
        self._bar: Any = None
        if notebook if notebook is not None else in_notebook():
            from IPython.display import display

            self._handle = display(self._bundle(), raw=True, display_id=True)
        else:
            from tqdm import tqdm

            scale = unit == "B"
            self._bar = tqdm(total=total, desc=description, unit=unit or "it", unit_scale=scale,
                             unit_divisor=1024 if scale else 1000, file=stream or sys.stderr, leave=True,
                             dynamic_ncols=True, mininterval=_REFRESH_S)

    # -- what is shown -----------------------------------------------------------------------
    def text(self) -> str:
        """The one-line text form: description, amount, percentage, rate, note."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        parts = [self.description + ":"]
        if self.total:
            parts.append(f"{human(self.done, self.unit)} of {human(self.total, self.unit)} "
                         f"({100 * self.done / self.total:.0f}%)")
        elif self.done:
            parts.append(human(self.done, self.unit))
        if self.done and self.unit:
            parts.append(f"{human(self.done / elapsed, self.unit)}/s")
        parts.append(f"{elapsed:.0f} s")
        if self.note:
            parts.append("- " + self.note)
        return " ".join(parts)

    def _bundle(self) -> dict[str, str]:
        text = self.text()
        pct = 100 * self.done / self.total if self.total else None
        bar = (f'<progress value="{self.done}" max="{self.total}" style="width:16em"></progress> '
               if pct is not None else "")
        return {"text/plain": text, "text/html": f"<div>{bar}<code>{html.escape(text)}</code></div>"}

    # -- updates -----------------------------------------------------------------------------
    def advance(self, amount: float = 1, note: str | None = None) -> None:
        """Count ``amount`` more units done."""
        self.set(self.done + amount, note)

    def set(self, done: float, note: str | None = None, total: float | None = None) -> None:
        """Set the amount done (and optionally a short note, or a newly known total)."""
        if total is not None:
            self.total = total
        if note is not None:
            self.note = note
        if self._bar is not None:
            if total is not None:
                self._bar.total = total
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(done - self.done)
        self.done = done
        if self._handle is not None and time.monotonic() - self._drawn >= _REFRESH_S:
            self._draw()

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        self._handle.update(self._bundle(), raw=True)

    def close(self, note: str | None = None) -> None:
        """Show the final state (always drawn, however recent the last redraw)."""
        if note is not None:
            self.note = note
        if self._handle is not None:
            self._draw()
            self._handle = None
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note)
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
