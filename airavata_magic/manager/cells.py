"""The manager's cell side: waiting for a runtime to answer, connecting, running cells on one or
several runtimes, interrupting.

``CellsMixin`` is part of ``RuntimeManager`` (``core.py``); it is split out to keep each module
readable. It uses the manager's store, link cache, walltime warnings and ``_apply``/``_mark``.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from ..errors import KernelDied, RuntimeFailed, RuntimeUnavailable
from ..relay import CellOutcome, KernelLink, OutputSink, run_cell
from ..runtime import Runtime, RuntimeState
from ..views import runtime_log
from .links import Held

if TYPE_CHECKING:
    from .core import RuntimeManager

MAX_POLL_INTERVAL = 2.0
#: how long a backend's liveness check may take during a cell: less than the heartbeat's
#: patience (relay.link.HEARTBEAT_TIMEOUT, 3.5 s), so a slow API server cannot outlast it
LIVENESS_TIMEOUT_S = 2.0

#: ``on_update(record, seconds elapsed, log tail)`` while waiting
OnUpdate = Callable[[Runtime, float, str], None]


class CellsMixin:
    """Waiting, connecting and running cells (part of ``RuntimeManager``)."""

    def wait(self: "RuntimeManager", name: str, timeout: float | None = None,
             on_update: OnUpdate | None = None) -> Runtime:
        """Block until the runtime's kernel answers ``kernel_info``; raise ``RuntimeFailed`` at once
        when it fails, expires, dies or is stopped, with the reason and log tail.
        ``on_update(record, elapsed, log_tail)`` is called after each status query."""
        rt = self.get(name)
        backend = self.backend_for(rt)
        self._hold(name)
        start = time.monotonic()
        interval = backend.poll_interval
        link: KernelLink | None = None
        try:
            while True:
                held = self.links.get(name)
                if rt.state == RuntimeState.READY and held is not None:
                    return rt
                obs = backend.observe([rt]).get(name)
                if obs is not None:
                    self._apply(rt, obs)
                tail = runtime_log(obs.log_tail) if obs else ""  # without the kernel's banner
                if on_update:
                    on_update(rt, time.monotonic() - start, tail)
                if rt.state.terminal:
                    raise RuntimeFailed(f"runtime {name!r} {rt.state.value}: {rt.reason or 'no reason given'}", tail)
                if rt.state in (RuntimeState.STARTING, RuntimeState.READY):
                    if link is None:
                        info = backend.connection(rt)
                        if info is not None:
                            link = KernelLink(info, label=name)
                    if link is not None:
                        try:
                            link.wait_ready(timeout=min(2.0, max(0.2, interval * 4)))
                        except KernelDied:
                            pass
                        else:
                            rt.state, rt.ready_at = RuntimeState.READY, time.time()
                            self.links.put(Held(rt, backend, link))
                            link = None
                            self._save(rt)
                            self.walltime.schedule(rt)
                            if on_update:
                                on_update(rt, time.monotonic() - start, tail)
                            return rt
                if timeout is not None and time.monotonic() - start >= timeout:
                    raise RuntimeUnavailable(
                        f"runtime {name!r} is still {rt.state.value} after {timeout:g} s"
                        f"{' (' + rt.reason + ')' if rt.reason else ''}; wait again or %stop_runtime {name}")
                if link is None:
                    time.sleep(interval)
                interval = min(interval * 1.3, MAX_POLL_INTERVAL)
        finally:
            if link is not None:
                link.close()

    def link(self: "RuntimeManager", name: str) -> KernelLink:
        """The connected link of a ready runtime (connecting on first use in this process).

        The per-cell fast path touches no file: the record cached with the link is the one this
        manager last saved; the heartbeat and the backend's liveness check catch a runtime that
        ends behind our back."""
        return self._held(name).link

    def _held(self: "RuntimeManager", name: str) -> Held:
        held = self.links.get(name)
        if held is not None:
            ends_at = held.record.ends_at
            if ends_at is None or time.time() < ends_at:
                return held
        rt = self.get(name)
        if rt.ends_at is not None and time.time() >= rt.ends_at and not rt.state.terminal:
            self.refresh([rt])
        if rt.state.terminal:
            self.links.drop(name)
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}"
                                     f"{' (' + rt.reason + ')' if rt.reason else ''}; "
                                     f"%request_runtime {name} to get a new one")
        if rt.state != RuntimeState.READY:
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}, not ready; run %wait_for_runtime {name}")
        backend = self.backend_for(rt)
        if held is not None:  # still connected; the record was only stale
            held.record = rt
            return held
        info = backend.connection(rt)
        if info is None:
            raise RuntimeUnavailable(f"runtime {name!r} has no connection info; %restart_runtime {name}")
        link = KernelLink(info, label=name)
        try:
            link.wait_ready(timeout=10)
        except KernelDied as e:
            link.close()
            self._mark([name], RuntimeState.DEAD, str(e))
            raise
        held = Held(rt, backend, link)
        self.links.put(held)
        self._hold(name)
        return held

    def run(self: "RuntimeManager", names: list[str], code: str, sink: OutputSink, *, allow_stdin: bool = True,
            silent: bool = False, user_expressions: dict[str, str] | None = None) -> list[CellOutcome]:
        """Run one cell on one or several ready runtimes and relay its output to ``sink``."""
        held = {n: self._held(n) for n in names}
        for h in held.values():
            self.walltime.check(h.record)

        def interrupt(link: KernelLink) -> None:
            h = held[link.label]
            h.backend.interrupt(h.record, link.send_interrupt_request)

        def tick() -> None:
            for h in held.values():
                self.walltime.check(h.record)

        def alive(link: KernelLink) -> bool | None:
            # Asked from the relay's liveness thread, never from its poll loop (relay.liveness):
            # a slow backend has no say until it answers; the heartbeat stays the authority.
            h = held[link.label]
            return h.backend.kernel_alive(h.record, timeout=LIVENESS_TIMEOUT_S)

        try:
            return run_cell([h.link for h in held.values()], code, sink, allow_stdin=allow_stdin, silent=silent,
                            user_expressions=user_expressions, interrupt=interrupt, tick=tick, alive=alive)
        except KernelDied as e:
            died = e.runtime if e.runtime in names else names[0]
            rt = held[died].record
            if rt.ends_at is not None and time.time() >= rt.ends_at - 5:
                self._mark([died], RuntimeState.EXPIRED, "walltime reached")
                raise RuntimeUnavailable(f"runtime {died!r} expired: its walltime ended during this cell") from None
            self._mark([died] if e.runtime in names else names, RuntimeState.DEAD, str(e))
            raise RuntimeUnavailable(f"{e}; runtime {died!r} is marked dead "
                                     f"(%request_runtime {died} for a new one)") from None

    def interrupt(self: "RuntimeManager", name: str) -> str:
        """Interrupt the cell running on ``name``."""
        held = self._held(name)
        held.backend.interrupt(held.record, held.link.send_interrupt_request)
        return f"interrupt sent to {name!r}"

    def stat(self: "RuntimeManager", name: str) -> dict[str, Any]:
        """Details of one runtime, including what its kernel sees (GPUs, host, Python)."""
        from ..relay import NotebookSink
        from ..views import stat_fields

        rt = self.get(name)
        self.refresh([rt])
        info = stat_fields(rt)
        holders = self.store.holders(name)
        info["held by"] = ", ".join(f"pid {p}" for p in holders) or "nobody"
        if rt.state == RuntimeState.READY:
            probe = {
                "kernel host": "__import__('socket').gethostname()",
                "kernel python": "__import__('sys').version.split()[0]",
                "GPUs seen": "__import__('os').environ.get('CUDA_VISIBLE_DEVICES') "
                             "or __import__('os').environ.get('NVIDIA_VISIBLE_DEVICES') or 'none'",
            }
            outcome = self.run([name], "", NotebookSink(), silent=True, user_expressions=probe)[0]
            for key, value in outcome.user_expressions.items():
                if value.get("status") == "ok":
                    info[key] = value["data"].get("text/plain", "").strip("'\"")
        return info

