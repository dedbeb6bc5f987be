"""How a transfer reports its progress: bytes moved and files finished.

The copy engine talks to this small interface; what users see comes from the project's one
progress helper (``airavata_magic.progress``): one display updated in place in a notebook, a tqdm
bar on stderr elsewhere. Callers may pass their own object, or ``False`` for silence.
"""
from __future__ import annotations

import threading
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    """What a transfer reports to."""

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


class Shown:
    """Progress shown by ``airavata_magic.progress.Progress``: bytes with rate, files in the note.

    Thread-safe: bytes arrive from the SSH event loop's thread and from copy worker threads."""

    def __init__(self, notebook: bool | None = None, stream: TextIO | None = None) -> None:
        self._notebook, self._stream = notebook, stream
        self._lock = threading.Lock()
        self._bar: Any = None
        self._files = 0
        self._total_files: int | None = None

    def _note(self) -> str:
        return f"{self._files}/{self._total_files} files" if self._total_files else f"{self._files} files"

    def start(self, total_bytes: int | None, total_files: int | None, label: str) -> None:
        from ..progress import Progress as Bar

        with self._lock:
            self._total_files, self._files = total_files, 0
            self._bar = Bar(label, total=total_bytes or None, unit="B", notebook=self._notebook, stream=self._stream)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        with self._lock:
            if self._bar is None:
                return
            self._files += files
            self._bar.advance(nbytes, self._note() if files else None)

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close(self._note())
                self._bar = None


def resolve(progress: "Progress | bool | None") -> Progress:
    """``None``/``True``: shown (notebook display or tqdm on stderr); ``False``: silent; else as given."""
    if progress is None or progress is True:
        return Shown()
    if progress is False:
        return NoProgress()
    return progress
