"""Progress of long transfers, shown in place: one notebook display updated, or tqdm on stderr."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Protocol


class Progress(Protocol):
    """What a transfer reports to: bytes moved, files finished, and the end."""

    def start(self, total_bytes: int | None, total_files: int | None, label: str) -> None: ...
    def advance(self, nbytes: int = 0, files: int = 0) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    """Reports nothing (scripts that want silence, tests)."""

    def start(self, total_bytes: int | None, total_files: int | None, label: str) -> None:
        pass

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        pass

    def close(self) -> None:
        pass


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class _Counter:
    """Thread-safe counts shared by the concrete displays (transfers may run in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = 0
        self.files = 0
        self.total_bytes: int | None = None
        self.total_files: int | None = None
        self.label = ""
        self.t0 = time.monotonic()
        self.last = 0.0

    def line(self) -> str:
        el = max(time.monotonic() - self.t0, 1e-6)
        tb = f" / {_size(self.total_bytes)}" if self.total_bytes else ""
        pct = f" {100 * self.bytes / self.total_bytes:5.1f}%" if self.total_bytes else ""
        tf = f"/{self.total_files}" if self.total_files else ""
        return (f"{self.label}:{pct} {_size(self.bytes)}{tb} at {_size(self.bytes / el)}/s, "
                f"{self.files}{tf} files, {el:.1f} s")


class NotebookProgress(_Counter):
    """One display in the notebook, updated in place at most ~5 times a second."""

    def __init__(self) -> None:
        super().__init__()
        self._handle: Any = None

    def start(self, total_bytes: int | None, total_files: int | None, label: str) -> None:
        from IPython.display import display

        self.total_bytes, self.total_files, self.label = total_bytes, total_files, label
        self.t0 = time.monotonic()
        self._handle = display({"text/plain": self.line()}, raw=True, display_id=True)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        with self.lock:
            self.bytes += nbytes
            self.files += files
            now = time.monotonic()
            if now - self.last < 0.2:
                return
            self.last = now
        self._show()

    def _show(self) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": self.line()}, raw=True)

    def close(self) -> None:
        self._show()


class TqdmProgress:
    """A tqdm bar on stderr (the CLI): bytes with rate, files in the postfix."""

    def __init__(self, stream: Any = None) -> None:
        self._bar: Any = None
        self._files = 0
        self._total_files: int | None = None
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def start(self, total_bytes: int | None, total_files: int | None, label: str) -> None:
        from tqdm import tqdm

        self._total_files = total_files
        self._bar = tqdm(total=total_bytes or None, unit="B", unit_scale=True, unit_divisor=1000, desc=label,
                         file=self._stream, mininterval=0.2, leave=True)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        with self._lock:
            if self._bar is None:
                return
            if files:
                self._files += files
                tf = f"/{self._total_files}" if self._total_files else ""
                self._bar.set_postfix_str(f"{self._files}{tf} files", refresh=False)
            self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def auto() -> Progress:
    """A notebook display inside an IPython kernel, else tqdm on stderr."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:
        ip = None
    if ip is not None and getattr(ip, "kernel", None) is not None:
        return NotebookProgress()
    return TqdmProgress()


def resolve(progress: "Progress | bool | None") -> Progress:
    """``None``/``True`` = automatic, ``False`` = silent, else the given object."""
    if progress is None or progress is True:
        return auto()
    if progress is False:
        return NoProgress()
    return progress


ByteCallback = Callable[[int], None]
