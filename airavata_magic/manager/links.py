"""``Held``: what this process keeps of a runtime it is connected to, in ONE cache keyed by name.

Each entry holds the runtime's record (as last saved by this process's manager), the backend
serving it and the connected ``KernelLink``. The per-cell fast path reads it and no file. The
manager replaces the record whenever it saves one, so the cache and the record on disk agree;
dropping the entry closes the link.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..relay import KernelLink
    from ..runtime import Runtime


@dataclass
class Held:
    """A runtime this process is connected to."""

    record: "Runtime"
    backend: "Backend"
    link: "KernelLink"


class LinkCache:
    """The connected runtimes of this process, by name. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}

    def get(self, name: str) -> Held | None:
        """The entry of ``name`` if its link is still open."""
        with self._lock:
            held = self._held.get(name)
        if held is not None and held.link.closed:
            self.drop(name)
            return None
        return held

    def put(self, held: Held) -> None:
        """Keep a freshly connected runtime (closing a link it replaces)."""
        with self._lock:
            old = self._held.get(held.record.name)
            self._held[held.record.name] = held
        if old is not None and old.link is not held.link:
            old.link.close()

    def update_record(self, rt: "Runtime") -> None:
        """The manager saved ``rt``: keep the cached record the same."""
        with self._lock:
            held = self._held.get(rt.name)
            if held is not None:
                held.record = rt

    def drop(self, name: str) -> None:
        """Forget ``name`` and close its link."""
        with self._lock:
            held = self._held.pop(name, None)
        if held is not None:
            held.link.close()

    def names(self) -> list[str]:
        """Names of the runtimes held."""
        with self._lock:
            return sorted(self._held)

    def close(self) -> None:
        """Close every link."""
        for name in self.names():
            self.drop(name)
