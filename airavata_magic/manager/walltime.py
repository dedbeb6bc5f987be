"""``WalltimeWarnings``: the one owner of walltime warnings and their timers.

The notebook is warned once per threshold (5 min, 1 min before the walltime ends): during a cell
(``check``, called from the relay's tick) and while no cell runs (a timer per runtime fires at the
next threshold). ``close()`` cancels every timer; ``cancel(name)`` one runtime's.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable

from ..views import format_seconds

if TYPE_CHECKING:
    from ..runtime import Runtime

WARN_BEFORE = (300, 60)  # seconds before the walltime ends at which the notebook is warned


class WalltimeWarnings:
    """Warnings before runtimes reach their walltime, and the timers that send them."""

    def __init__(self, warn: Callable[[str], None], current: Callable[[str], "Runtime | None"],
                 before: tuple[int, ...] = WARN_BEFORE) -> None:
        """``warn(text)`` shows a warning; ``current(name)`` reads a runtime's latest record
        (None once it is gone) when a timer fires."""
        self._warn = warn
        self._current = current
        self.before = before
        self._lock = threading.Lock()
        self._warned: dict[str, set[int]] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._generation = 0  # bumped by close(): a timer already firing then does nothing

    def check(self, rt: "Runtime") -> None:
        """Warn once per threshold crossed."""
        left = rt.time_left()
        if left is None:
            return
        with self._lock:
            warned = self._warned.setdefault(rt.name, set())
            crossed = {t for t in self.before if left <= t}
            if not crossed - warned:
                return
            warned |= crossed
        ends = time.strftime("%H:%M:%S", time.localtime(rt.ends_at))
        self._warn(f"warning: runtime {rt.name!r} reaches its walltime in {format_seconds(left)} "
                   f"(at {ends}); save your work")

    def schedule(self, rt: "Runtime") -> None:
        """Warn now if a threshold is already crossed, and set a timer for the next one. In a
        notebook the warning shows under the cell that made the runtime ready."""
        self.cancel(rt.name, forget=False)
        left = rt.time_left()
        if left is None or rt.state.terminal:
            return
        self.check(rt)
        upcoming = [t for t in self.before if t < left]
        if not upcoming:
            return
        with self._lock:
            timer = threading.Timer(max(0.0, left - max(upcoming)), self._fire, args=(rt.name, self._generation))
            timer.daemon = True
            self._timers[rt.name] = timer
        timer.start()

    def _fire(self, name: str, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._timers.pop(name, None)
        rt = self._current(name)
        if rt is not None and not rt.state.terminal:
            self.schedule(rt)

    def cancel(self, name: str, forget: bool = True) -> None:
        """Cancel ``name``'s timer (and, with ``forget``, which warnings it already had)."""
        with self._lock:
            timer = self._timers.pop(name, None)
            if forget:
                self._warned.pop(name, None)
        if timer is not None:
            timer.cancel()

    def pending(self) -> list[str]:
        """Names of runtimes with a warning timer set."""
        with self._lock:
            return sorted(self._timers)

    def close(self) -> None:
        """Cancel every timer (a runtime made ready later gets a new one)."""
        with self._lock:
            self._generation += 1
            timers, self._timers = list(self._timers.values()), {}
        for t in timers:
            t.cancel()
