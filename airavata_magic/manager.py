"""``RuntimeManager``: the one owner of runtime state in a process.

It turns what the user asked for (a preset, flags, a profile) into a ``Runtime`` record, asks the
resource's backend to start it, follows its state, keeps one ``KernelLink`` per ready runtime, and
saves every change to the per-user ``RuntimeStore``. Magics and the command line call it; backends
never touch records or links themselves.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import asdict
from typing import Any, Callable, Iterable

from . import profile as profiles
from .backends import AuthResult, Backend, Resource, backend_class
from .errors import (AiravataError, InvalidArgument, KernelDied, RuntimeFailed, RuntimeNotFound,
                     RuntimeUnavailable)
from .relay import CellOutcome, KernelLink, OutputSink, run_cell
from .runtime import LOCAL, Observation, Runtime, RuntimeSpec, RuntimeState, RuntimeStore, validate_name

WARN_BEFORE = (300, 60)  # seconds before the walltime ends at which the notebook is warned
MAX_POLL_INTERVAL = 2.0


def format_seconds(seconds: float | None) -> str | None:
    """``3725`` -> ``'1:02:05'``; None stays None."""
    if seconds is None:
        return None
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def auth_rows(rows: list[AuthResult]) -> list[str]:
    """``%authenticate`` / ``airavata-magic authenticate`` output: one aligned line per resource."""
    width = max((len(r.resource) for r in rows), default=0)
    return [f"{r.resource:<{width}}  {r.kind:<10}  {'ok' if r.ok else 'FAILED'}  {r.detail}" for r in rows]


def print_state_changes() -> Callable[[Runtime, float], None]:
    """An ``on_update`` for ``wait()`` that prints one line each time state or reason changes."""
    last: list[tuple[str, str]] = []

    def report(rt: Runtime, elapsed: float) -> None:
        key = (rt.state.value, rt.reason)
        if last != [key]:
            last[:] = [key]
            why = f" ({rt.reason})" if rt.reason else ""
            print(f"[{elapsed:6.1f} s] {rt.name}: {rt.state.value}{why}", flush=True)

    return report


class RuntimeManager:
    """Requests, follows, connects to and stops this user's runtimes."""

    def __init__(self, store: RuntimeStore | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.store = store or RuntimeStore()
        self.current: str = LOCAL
        #: runtime names the last executed cell ran on ([] = the notebook kernel itself)
        self.last_routed: list[str] = []
        self._backends: dict[tuple[str | None, str], Backend] = {}
        self._links: dict[str, KernelLink] = {}
        self._ready: dict[str, tuple[Runtime, Backend]] = {}  # record + backend kept with each link
        self._warned: dict[str, set[int]] = {}
        self._warn_lock = threading.Lock()
        self._warn_timers: dict[str, threading.Timer] = {}
        #: seconds before a walltime ends at which the notebook is warned
        self.warn_before: tuple[int, ...] = WARN_BEFORE
        #: the latest Observation of each runtime seen by this process (log tail, events)
        self.last_observation: dict[str, Observation] = {}
        self._warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))

    # -- backends ----------------------------------------------------------------------------
    def _backend(self, profile_path: str | None, resource: Resource) -> Backend:
        key = (profile_path, resource.name)
        if key not in self._backends:
            self._backends[key] = backend_class(resource.kind)(resource, self.store.runtime_dir)
        return self._backends[key]

    def backend_for(self, rt: Runtime) -> Backend:
        """The backend serving a recorded runtime, from the profile it was requested with."""
        if rt.profile is None:
            return self._backend(None, profiles.LOCAL_RESOURCE)
        try:
            prof = profiles.load_profile(rt.profile)
        except AiravataError as e:
            raise RuntimeUnavailable(f"runtime {rt.name!r} came from {rt.profile}, which cannot be used now: {e}") from None
        return self._backend(prof.path, prof.resource(rt.resource))

    # -- request -------------------------------------------------------------------------------
    def request(self, name: str, *, file: str | None = None, resource: str | None = None,
                use: str | None = None, overrides: dict[str, Any] | None = None,
                preset: str | None = None) -> tuple[Runtime, str]:
        """Submit a runtime and return at once with its record and a one-line message.

        NAME's settings come from the preset of that name (or from ``preset`` when given, e.g.
        one fresh runtime per kernel), then from ``resource``/``use`` and ``overrides``."""
        validate_name(name)
        if name == LOCAL:
            raise InvalidArgument("'local' is the notebook's own kernel; give the new runtime another name")
        if resource and use:
            raise InvalidArgument("give either --resource or --use, not both")
        prof = profiles.load_profile(file)
        if preset is not None and preset not in prof.presets:
            raise InvalidArgument(f"no preset {preset!r} in {prof.path or 'the profile (no file found)'}")
        preset = prof.presets.get(preset or name)
        spec = preset.spec if preset else RuntimeSpec()
        spec = spec.merged(RuntimeSpec.from_values({k: v for k, v in (overrides or {}).items() if v is not None}))
        candidates: list[str]
        if resource:
            prof.resource(resource)
            candidates = [resource]
        elif use:
            candidates = profiles.parse_use(use, prof)
        elif preset:
            candidates = preset.use or [preset.resource]  # type: ignore[list-item]
        else:
            presets = ", ".join(sorted(prof.presets)) or "none"
            raise InvalidArgument(
                f"{name!r} is not a preset in {prof.path or 'the profile (no file found)'} (presets: {presets}); "
                f"give --resource R (resources: {', '.join(sorted(prof.resources))}) or --use R[:PARTITION],..."
            )
        if self.store.exists(name):
            old = self.store.load(name)
            if not old.state.terminal:
                raise InvalidArgument(f"runtime {name!r} already exists ({old.state.value}); "
                                      f"%stop_runtime {name} first or choose another name")
            self._drop_link(name)
            self.store.forget(name)

        def make(candidate: str) -> tuple[Runtime, Backend]:
            res_name, _, partition = candidate.partition(":")
            res = prof.resource(res_name)
            s = spec.merged(RuntimeSpec(partition=partition or None)) if partition else spec
            rt = Runtime(name=name, resource=res.name, kind=res.kind, spec=s, profile=prof.path,
                         preset=preset.name if preset else None)
            return rt, self._backend(prof.path, res)

        note = ""
        if len(candidates) == 1:
            rt, backend = make(candidates[0])
        else:
            rt, backend, note = self._choose(candidates, make)
        backend.request(rt)
        self.store.save(rt)
        job = f"job {rt.job_id}" if rt.job_id else "no job id yet"
        msg = f"runtime {name!r} requested on {rt.resource}"
        if rt.spec.partition:
            msg += f":{rt.spec.partition}"
        msg += f" ({job}, {rt.state.value})"
        return rt, (note + "\n" + msg if note else msg)

    def _choose(self, candidates: list[str], make) -> tuple[Runtime, Backend, str]:
        """``--use``: ask each candidate when it would start; take the earliest (ties: first)."""
        estimates: list[tuple[float, int, str, Runtime, Backend]] = []
        notes: list[str] = []
        for i, cand in enumerate(candidates):
            rt, backend = make(cand)
            try:
                est = backend.estimate_start(rt)
            except AiravataError as e:
                notes.append(f"{cand}: cannot start ({e})")
                continue
            why = backend.estimate_reason(rt) if est is not None else ""
            notes.append((f"{cand}: starts in ~{est:.0f} s" if est is not None else f"{cand}: start time unknown")
                         + (f" [{why}]" if why else ""))
            estimates.append((est if est is not None else float("inf"), i, cand, rt, backend))
        if not estimates:
            raise RuntimeUnavailable("no resource in --use can run this runtime: " + "; ".join(notes))
        estimates.sort(key=lambda e: (e[0], e[1]))
        _, _, cand, rt, backend = estimates[0]
        return rt, backend, f"chose {cand}, expected to start first ({'; '.join(notes)})"

    # -- state ---------------------------------------------------------------------------------
    def get(self, name: str) -> Runtime:
        if name == LOCAL:
            raise InvalidArgument("'local' is the notebook's own kernel, not a requested runtime")
        validate_name(name)
        return self.store.load(name)

    def _apply(self, rt: Runtime, obs: Observation) -> None:
        self.last_observation[rt.name] = obs
        if not (rt.state == RuntimeState.READY and obs.state == RuntimeState.STARTING):
            rt.state = obs.state
        rt.reason = obs.reason
        rt.node = obs.node or rt.node
        if obs.ends_at is not None:
            rt.ends_at = obs.ends_at
        if rt.state.terminal:
            self._drop_link(rt.name)
            timer = self._warn_timers.pop(rt.name, None)
            if timer is not None:
                timer.cancel()
            if self.current == rt.name:
                self.current = LOCAL
                self._warn(f"runtime {rt.name!r} is {rt.state.value}; cells run locally again")
        self.store.save(rt)

    def refresh(self, runtimes: Iterable[Runtime]) -> list[Runtime]:
        """Ask each backend once about all its live runtimes; save what changed."""
        rts = list(runtimes)
        groups: dict[int, tuple[Backend, list[Runtime]]] = {}
        for rt in rts:
            if rt.state.terminal:
                continue
            try:
                backend = self.backend_for(rt)
            except AiravataError as e:
                rt.reason = str(e)
                continue
            groups.setdefault(id(backend), (backend, []))[1].append(rt)
        for backend, group in groups.values():
            try:
                observed = backend.observe(group)
            except AiravataError as e:
                for rt in group:
                    rt.reason = f"status unavailable: {e}"
                continue
            for rt in group:
                if rt.name in observed:
                    self._apply(rt, observed[rt.name])
        return rts

    def wait(self, name: str, timeout: float | None = None,
             on_update: Callable[[Runtime, float], None] | None = None) -> Runtime:
        """Block until the runtime's kernel answers ``kernel_info``; raise ``RuntimeFailed`` at once
        when it fails, expires, dies or is stopped, with the reason and log tail."""
        rt = self.get(name)
        backend = self.backend_for(rt)
        start = time.monotonic()
        interval = backend.poll_interval
        link: KernelLink | None = None
        try:
            while True:
                elapsed = time.monotonic() - start
                if rt.state == RuntimeState.READY and name in self._links:
                    return rt
                obs = backend.observe([rt]).get(name)
                if obs is not None:
                    self._apply(rt, obs)
                if on_update:
                    on_update(rt, elapsed)
                if rt.state.terminal:
                    raise RuntimeFailed(f"runtime {name!r} {rt.state.value}: {rt.reason or 'no reason given'}",
                                        obs.log_tail if obs else "")
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
                            self.store.save(rt)
                            self._links[name], link = link, None
                            self._schedule_walltime_warnings(rt)
                            if on_update:
                                on_update(rt, time.monotonic() - start)
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

    # -- cells ---------------------------------------------------------------------------------
    def switch(self, name: str) -> str:
        if name == LOCAL:
            self.current = LOCAL
            return "cells run locally"
        rt = self.get(name)
        if rt.state.terminal:
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}"
                                     f"{' (' + rt.reason + ')' if rt.reason else ''}; request it again")
        self.current = name
        hint = "" if rt.state == RuntimeState.READY else f" (it is {rt.state.value}: %wait_for_runtime {name})"
        return f"cells run on {name!r}{hint}"

    def link(self, name: str) -> KernelLink:
        """The connected link of a ready runtime (connecting on first use in this process).

        The per-cell fast path touches no file: the record read when the link was made is
        kept with it; the heartbeat and the backend's liveness check catch a runtime that ends."""
        link = self._links.get(name)
        ready = self._ready.get(name)
        if link is not None and not link.closed and ready is not None:
            ends_at = ready[0].ends_at
            if ends_at is None or time.time() < ends_at:
                return link
        rt = self.get(name)
        if rt.ends_at is not None and time.time() >= rt.ends_at and not rt.state.terminal:
            self.refresh([rt])
        if rt.state.terminal:
            self._drop_link(name)
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}"
                                     f"{' (' + rt.reason + ')' if rt.reason else ''}; "
                                     f"%request_runtime {name} to get a new one")
        if rt.state != RuntimeState.READY:
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}, not ready; run %wait_for_runtime {name}")
        link = self._links.get(name)
        if link is None or link.closed:
            info = self.backend_for(rt).connection(rt)
            if info is None:
                raise RuntimeUnavailable(f"runtime {name!r} has no connection info; %restart_runtime {name}")
            link = KernelLink(info, label=name)
            try:
                link.wait_ready(timeout=10)
            except KernelDied as e:
                link.close()
                self._mark_dead([name], str(e))
                raise
            self._links[name] = link
        self._ready[name] = (rt, self.backend_for(rt))
        return link

    def run(self, names: list[str], code: str, sink: OutputSink, *, allow_stdin: bool = True,
            silent: bool = False, user_expressions: dict[str, str] | None = None) -> list[CellOutcome]:
        """Run one cell on one or several ready runtimes and relay its output to ``sink``."""
        links = [self.link(n) for n in names]
        records = {n: self._ready[n][0] for n in names}
        backends = {n: self._ready[n][1] for n in names}
        for n in names:
            self._walltime_check(records[n])

        def interrupt(link: KernelLink) -> None:
            backends[link.label].interrupt(records[link.label], link.send_interrupt_request)

        def alive(link: KernelLink) -> bool | None:
            return backends[link.label].kernel_alive(records[link.label])

        def tick() -> None:
            for n in names:
                self._walltime_check(records[n])

        try:
            return run_cell(links, code, sink, allow_stdin=allow_stdin, silent=silent,
                            user_expressions=user_expressions, interrupt=interrupt, tick=tick, alive=alive)
        except KernelDied as e:
            died = [e.runtime] if e.runtime in names else names
            rt = records.get(died[0])
            if rt is not None and rt.ends_at is not None and time.time() >= rt.ends_at - 5:
                self._mark([died[0]], RuntimeState.EXPIRED, "walltime reached")
                raise RuntimeUnavailable(f"runtime {died[0]!r} expired: its walltime ended during this cell") from None
            self._mark_dead(died, str(e))
            raise RuntimeUnavailable(f"{e}; runtime {died[0]!r} is marked dead "
                                     f"(%request_runtime {died[0]} for a new one)") from None

    def _walltime_check(self, rt: Runtime) -> None:
        """Warn once per threshold crossed (5 min, 1 min before the walltime ends)."""
        left = rt.time_left()
        if left is None:
            return
        with self._warn_lock:
            warned = self._warned.setdefault(rt.name, set())
            crossed = {t for t in self.warn_before if left <= t}
            if not crossed - warned:
                return
            warned |= crossed
        ends = time.strftime("%H:%M:%S", time.localtime(rt.ends_at))
        self._warn(f"warning: runtime {rt.name!r} reaches its walltime in {format_seconds(left)} "
                   f"(at {ends}); save your work")

    def _schedule_walltime_warnings(self, rt: Runtime) -> None:
        """Warn even while no cell runs: a timer fires at the next threshold. In a notebook the
        warning shows under the cell that made the runtime ready."""
        old = self._warn_timers.pop(rt.name, None)
        if old is not None:
            old.cancel()
        left = rt.time_left()
        if left is None or rt.state.terminal:
            return
        upcoming = [t for t in self.warn_before if t < left]
        self._walltime_check(rt)
        if not upcoming:
            return

        def fire() -> None:
            try:
                current = self.store.load(rt.name)
            except AiravataError:
                return
            if not current.state.terminal:
                self._walltime_check(current)
                self._schedule_walltime_warnings(current)

        timer = threading.Timer(max(0.0, left - max(upcoming)), fire)
        timer.daemon = True
        self._warn_timers[rt.name] = timer
        timer.start()

    def _mark(self, names: list[str], state: RuntimeState, reason: str) -> None:
        for n in names:
            self._drop_link(n)
            try:
                rt = self.store.load(n)
            except RuntimeNotFound:
                continue
            self._apply(rt, Observation(state, reason, rt.node))

    def _mark_dead(self, names: list[str], reason: str) -> None:
        self._mark(names, RuntimeState.DEAD, reason)

    def release_link(self, name: str) -> None:
        """Close this process's own connection to a runtime; the runtime and its tunnels stay."""
        self._drop_link(name)

    def _drop_link(self, name: str) -> None:
        self._ready.pop(name, None)
        link = self._links.pop(name, None)
        if link is not None:
            link.close()

    # -- control -------------------------------------------------------------------------------
    def interrupt(self, name: str) -> str:
        rt = self.get(name)
        link = self.link(name)
        self.backend_for(rt).interrupt(rt, link.send_interrupt_request)
        return f"interrupt sent to {name!r}"

    def restart(self, name: str, timeout: float = 120) -> str:
        rt = self.get(name)
        if rt.state.terminal:
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}; request it again")
        self._drop_link(name)
        self.backend_for(rt).restart(rt)
        rt.state = RuntimeState.STARTING
        self.store.save(rt)
        self.wait(name, timeout=timeout)
        return f"runtime {name!r} restarted (variables cleared, same allocation)"

    def stop(self, name: str) -> str:
        rt = self.get(name)
        msg = f"runtime {name!r} stopped"
        try:  # also for terminal states: a failed pod or a dead kernel's job may still exist
            self.backend_for(rt).stop(rt)
        except RuntimeUnavailable:
            pass
        self._drop_link(name)
        timer = self._warn_timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if not rt.state.terminal:
            rt.state, rt.reason = RuntimeState.STOPPED, "stopped by the user"
        else:
            msg = f"runtime {name!r} was already {rt.state.value}; cleaned up"
        self.store.save(rt)
        if self.current == name:
            self.current = LOCAL
            msg += "; cells run locally again"
        return msg

    def stop_all(self) -> list[str]:
        """Stop every live runtime of this user, and clean up dead ones (a kernel that stopped
        answering may still hold its job or process)."""
        return [self.stop(rt.name) for rt in self.store.all()
                if not rt.state.terminal or rt.state == RuntimeState.DEAD]

    def attach(self, name: str, timeout: float = 30) -> str:
        rt = self.get(name)
        self.refresh([rt])
        if rt.state.terminal:
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}"
                                     f"{' (' + rt.reason + ')' if rt.reason else ''}; nothing to attach to")
        self._drop_link(name)
        self.wait(name, timeout=timeout)
        return f"attached to {name!r} ({rt.resource}, job {rt.job_id}); %switch_runtime {name} to run cells there"

    def authenticate(self, file: str | None = None, names: list[str] | None = None) -> list[AuthResult]:
        prof = profiles.load_profile(file)
        chosen = names or list(prof.resources)
        results = []
        for n in chosen:
            res = prof.resource(n)
            try:
                results.append(self._backend(prof.path, res).authenticate())
            except AiravataError as e:
                results.append(AuthResult(n, res.kind, False, str(e)))
            except Exception as e:  # noqa: BLE001 - a row per resource, whatever went wrong
                results.append(AuthResult(n, res.kind, False, f"{type(e).__name__}: {e}"))
        return results

    # -- views ---------------------------------------------------------------------------------
    def table(self):
        """All of this user's runtimes as a pandas DataFrame (live ones refreshed first)."""
        import pandas as pd

        rows = []
        for rt in self.refresh(self.store.all()):
            rows.append({
                "name": rt.name, "resource": rt.resource, "state": rt.state.value, "job id": rt.job_id,
                "node": rt.node, "cpus": rt.spec.cpus, "gpus": rt.spec.gpus,
                "memory": f"{rt.spec.memory}M" if rt.spec.memory else None,
                "walltime left": None if rt.state.terminal else format_seconds(rt.time_left()),
                "current": rt.name == self.current, "reason": rt.reason,
            })
        columns = ["name", "resource", "state", "job id", "node", "cpus", "gpus", "memory",
                   "walltime left", "current", "reason"]
        return pd.DataFrame(rows, columns=columns)

    def stat(self, name: str) -> dict[str, Any]:
        """Details of one runtime, including what its kernel sees (GPUs, host, Python)."""
        rt = self.get(name)
        self.refresh([rt])
        info: dict[str, Any] = {"name": rt.name, "resource": rt.resource, "kind": rt.kind,
                                "state": rt.state.value, "reason": rt.reason, "job id": rt.job_id,
                                "node": rt.node, "preset": rt.preset}
        info.update({("requested node" if k == "node" else k): v for k, v in asdict(rt.spec).items()})
        info["walltime left"] = format_seconds(rt.time_left())
        info["requested at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rt.created_at))
        if rt.state == RuntimeState.READY:
            probe = {
                "kernel host": "__import__('socket').gethostname()",
                "kernel python": "__import__('sys').version.split()[0]",
                "GPUs seen": "__import__('os').environ.get('CUDA_VISIBLE_DEVICES') "
                             "or __import__('os').environ.get('NVIDIA_VISIBLE_DEVICES') or 'none'",
            }
            from .relay import NotebookSink

            outcome = self.run([name], "", NotebookSink(), silent=True, user_expressions=probe)[0]
            for key, value in outcome.user_expressions.items():
                if value.get("status") == "ok":
                    info[key] = value["data"].get("text/plain", "").strip("'\"")
        return info

    def close(self) -> None:
        for name in list(self._links):
            self._drop_link(name)
        for backend in self._backends.values():
            try:
                backend.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
