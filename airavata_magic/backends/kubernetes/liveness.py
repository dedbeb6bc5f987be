"""Pod liveness answered within a deadline: reads of the API run on one background thread.

``KubernetesBackend.kernel_alive`` is asked again and again while a cell runs (the relay's
liveness thread) and by a Jupyter provisioner's ``poll``. An API server under load can take
seconds to answer, longer than the heartbeat gives a kernel; so the caller never waits past its
``timeout``, and while a read is still on its way the last answer (or None: "cannot tell",
the heartbeat decides) stands.
"""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Callable


class PodLiveness:
    """Cached, deadline-bounded answers of ``read(name)`` (True alive, False gone, None unknown).

    ``read`` runs on one thread this object owns, at most once per ``interval`` seconds per name.
    """

    def __init__(self, read: Callable[[str], bool | None], interval: float, thread_name: str) -> None:
        self.read = read
        self.interval = interval
        self._thread_name = thread_name
        self._answers: dict[str, tuple[float, bool]] = {}  # name -> (answered at, alive)
        self._pending: dict[str, concurrent.futures.Future[bool | None]] = {}
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def alive(self, name: str, timeout: float) -> bool | None:
        """The answer for ``name``, waiting at most ``timeout`` seconds for a fresh one."""
        with self._lock:
            answered = self._answers.get(name)
            if answered is not None and time.monotonic() - answered[0] < self.interval:
                return answered[1]
            check = self._pending.get(name)
            if check is None:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                       thread_name_prefix=self._thread_name)
                check = self._pool.submit(self._ask, name)
                self._pending[name] = check
        try:
            return check.result(timeout=timeout)  # a bug in read() surfaces here, in the caller
        except concurrent.futures.TimeoutError:
            return answered[1] if answered is not None else None

    def _ask(self, name: str) -> bool | None:
        try:
            alive = self.read(name)
            if alive is not None:
                with self._lock:
                    self._answers[name] = (time.monotonic(), alive)
            return alive
        finally:
            with self._lock:
                self._pending.pop(name, None)

    def forget(self, name: str) -> None:
        """Drop the cached answer (after a restart or stop): the next question reads the API."""
        with self._lock:
            self._answers.pop(name, None)

    def close(self) -> None:
        """Stop the reading thread; a read in flight ends by its own request timeout."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
