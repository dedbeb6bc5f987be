"""The backend's liveness check, run beside the relay's poll loop instead of inside it.

A liveness call may be slow (a Kubernetes API server under load answers in seconds) while the
heartbeat gives a kernel ``HEARTBEAT_TIMEOUT`` seconds. Called from the loop, a slow call froze
the cell's output and, outlasting the heartbeat's patience, got a live kernel declared dead.
Here one background thread per running cell asks, one link at a time; the loop only reads the
answers and never waits for one. Only a ``False`` answer counts; a call still running simply
has no say yet (the heartbeat stays the authority).
"""
from __future__ import annotations

import threading
from typing import Callable

from .link import KernelLink

CHECK_INTERVAL = 0.5  # seconds between checks of one link
FIRST_CHECK_AFTER = 0.5  # a cell shorter than this costs no check (and no thread) at all


class Liveness:
    """Asks ``alive(link)`` in a background thread for the links of one running cell."""

    first_after = FIRST_CHECK_AFTER

    def __init__(self, alive: Callable[[KernelLink], bool | None]) -> None:
        self._alive = alive
        self._links: list[KernelLink] = []
        self._dead: KernelLink | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def dead(self, links: list[KernelLink]) -> KernelLink | None:
        """The first of ``links`` found dead so far, or None. Never blocks: the first call
        starts the checking thread. A check that raised re-raises here (in the loop's thread)."""
        with self._lock:
            self._links = list(links)
            dead, error = self._dead, self._error
        if error is not None:
            raise error
        if self._thread is None and links:
            self._thread = threading.Thread(target=self._run, name="airavata-liveness", daemon=True)
            self._thread.start()
        return dead if dead in links else None

    def stop(self) -> None:
        """The cell ended: ask no more (a call in progress finishes in the background)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                links = list(self._links)
            for link in links:
                if self._stop.is_set():
                    return
                try:
                    answer = self._alive(link)
                except Exception as e:  # noqa: BLE001 - handed to the loop's thread, raised there
                    with self._lock:
                        self._error = e
                    return
                if answer is False:
                    with self._lock:
                        self._dead = link
                    return
            self._stop.wait(CHECK_INTERVAL)
