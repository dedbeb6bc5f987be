"""``RuntimeManager``: the one owner of runtime state in a process, and the one writer of records.

It turns what the user asked for into a ``Runtime`` record (``requests``), asks the resource's
backend to start it, applies what the backend reports (``Submission``, ``Observation``), keeps
one connection per ready runtime (``links.LinkCache``), warns before walltimes end
(``walltime.WalltimeWarnings``), registers this process as the runtime's holder, and saves every
change to the per-user ``RuntimeStore``. Backends never touch records or links.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .. import profile as profiles
from ..backends import AuthResult, Backend, Submission, backend_class
from ..errors import AiravataError, InvalidArgument, RuntimeNotFound, RuntimeUnavailable
from ..runtime import LOCAL, BrokenRecord, Observation, Runtime, RuntimeState, RuntimeStore, idle_limit, validate_name
from .cells import CellsMixin
from .links import LinkCache
from .requests import candidate_runtime, choose, plan_request
from .walltime import WalltimeWarnings

if TYPE_CHECKING:
    import pandas as pd

    from ..profile import Resource


def apply_submission(rt: Runtime, sub: Submission | None) -> None:
    """Copy what a backend's ``request()`` reported into a record (the manager's step; tests of
    backends use it too). ``None``: a backend of the older contract already filled the record."""
    if sub is None:
        return
    rt.job_id, rt.state, rt.reason = sub.job_id, sub.state, sub.reason
    rt.backend_state = dict(sub.backend_state)
    rt.node = sub.node or rt.node
    rt.ends_at = sub.ends_at if sub.ends_at is not None else rt.ends_at


def apply_observation(rt: Runtime, obs: Observation) -> bool:
    """Copy an observation into a record; True when it made the runtime terminal just now."""
    was_terminal = rt.state.terminal
    if not (rt.state == RuntimeState.READY and obs.state == RuntimeState.STARTING):
        rt.state = obs.state
    rt.reason = obs.reason
    rt.node = obs.node or rt.node
    if obs.ends_at is not None:
        rt.ends_at = obs.ends_at
    return rt.state.terminal and not was_terminal


class RuntimeManager(CellsMixin):
    """Requests, follows, connects to and stops this user's runtimes."""

    def __init__(self, store: RuntimeStore | None = None, warn: Callable[[str], None] | None = None) -> None:
        """``store``: the records (default: ``$AIRAVATA_MAGIC_HOME``); ``warn(text)``: one line to the user."""
        self.store = store or RuntimeStore()
        #: where cells run: a runtime name, or ``LOCAL`` for the notebook's own kernel
        self.current: str = LOCAL
        self.warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
        self._backends: dict[tuple[str | None, str], Backend] = {}
        self.links = LinkCache()
        self.walltime = WalltimeWarnings(self.warn, self._current_record)
        self._holding: set[str] = set()  # runtimes this process registered itself as holder of

    @property
    def warn_before(self) -> tuple[int, ...]:
        """Seconds before a walltime ends at which the notebook is warned."""
        return self.walltime.before

    @warn_before.setter
    def warn_before(self, value: tuple[int, ...]) -> None:
        self.walltime.before = tuple(value)

    # -- backends ----------------------------------------------------------------------------
    def _backend(self, profile_path: str | None, resource: "Resource") -> Backend:
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

    # -- records: the one writer ---------------------------------------------------------------
    def _save(self, rt: Runtime) -> None:
        """Write a record and keep this process's cached copy the same."""
        self.store.save(rt)
        self.links.update_record(rt)

    def _current_record(self, name: str) -> Runtime | None:
        try:
            return self.store.load(name)
        except AiravataError:  # gone or unreadable: nothing to warn about
            return None

    def _apply(self, rt: Runtime, obs: Observation, free: bool = True) -> None:
        """Apply an observation and save. A runtime that just ended is let go (link closed,
        warnings cancelled) and, with ``free``, its backend is asked to free what may remain (a
        job whose kernel exited, a process past its walltime): observers never act, the manager
        does. A kernel that only stopped answering is not killed (``stop --all`` cleans it up)."""
        ended = apply_observation(rt, obs)
        if rt.state.terminal:
            self._let_go(rt.name)
        if ended and free:
            try:
                self.backend_for(rt).stop(rt)
            except AiravataError:
                pass  # already gone, or unreachable now: `stop --all` tries again
        self._save(rt)
        if rt.state.terminal and self.current == rt.name:
            self.current = LOCAL
            self.warn(f"runtime {rt.name!r} is {rt.state.value}; cells run locally again")

    def _hold(self, name: str) -> None:
        """Register this process as a holder of ``name`` (a notebook that uses it)."""
        self.store.hold(name)
        self._holding.add(name)

    def _release(self, name: str) -> None:
        self.store.release(name)
        self._holding.discard(name)

    def _let_go(self, name: str) -> None:
        """Close this process's link and warnings of ``name`` (the runtime itself stays)."""
        self.links.drop(name)
        self.walltime.cancel(name)

    def _mark(self, names: list[str], state: RuntimeState, reason: str) -> None:
        for n in names:
            self.links.drop(n)
            try:
                rt = self.store.load(n)
            except RuntimeNotFound:
                continue
            self._apply(rt, Observation(state, reason, rt.node), free=state != RuntimeState.DEAD)

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
        idle_limit()  # a bad AIRAVATA_MAGIC_IDLE_TIMEOUT fails before anything is submitted
        plan = plan_request(name, file=file, resource=resource, use=use, overrides=overrides, preset=preset)
        if self.store.exists(name):
            old = self.store.load_any(name)
            if isinstance(old, Runtime) and not old.state.terminal:
                raise InvalidArgument(f"runtime {name!r} already exists ({old.state.value}); "
                                      f"%stop_runtime {name} first or choose another name")
            if isinstance(old, BrokenRecord):
                raise InvalidArgument(f"the record of runtime {name!r} is unreadable ({old.reason}); "
                                      f"%stop_runtime {name} removes it")
            self._let_go(name)
            self._holding.discard(name)
            self.store.forget(name)

        def make(candidate: str) -> tuple[Runtime, Backend]:
            rt, res = candidate_runtime(name, plan, candidate)
            return rt, self._backend(plan.profile.path, res)

        note = ""
        if len(plan.candidates) == 1:
            rt, backend = make(plan.candidates[0])
        else:
            rt, backend, note = choose(plan.candidates, make)
        apply_submission(rt, backend.request(rt))
        self._save(rt)
        self._hold(name)
        job = f"job {rt.job_id}" if rt.job_id else "no job id yet"
        msg = f"runtime {name!r} requested on {rt.resource}"
        if rt.spec.partition:
            msg += f":{rt.spec.partition}"
        msg += f" ({job}, {rt.state.value})"
        return rt, (note + "\n" + msg if note else msg)

    # -- state ---------------------------------------------------------------------------------
    def get(self, name: str) -> Runtime:
        """The record of a requested runtime (``RuntimeNotFound`` if none or unreadable)."""
        if name == LOCAL:
            raise InvalidArgument("'local' is the notebook's own kernel, not a requested runtime")
        validate_name(name)
        return self.store.load(name)

    def refresh(self, runtimes: Iterable[Runtime]) -> list[Runtime]:
        """Ask each backend once about all its live runtimes; save what changed. Runtimes that no
        process has held for the idle limit are stopped (``runtime.store.idle_limit``)."""
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
        for rt in rts:
            if not rt.state.terminal:
                self._cull_if_idle(rt)
        return rts

    def _cull_if_idle(self, rt: Runtime, now: float | None = None) -> None:
        """Start or clear the runtime's idle clock; stop it once unheld for the idle limit."""
        now = now or time.time()
        if self.store.holders(rt.name):
            if rt.unheld_since is not None:
                rt.unheld_since = None
                self._save(rt)
            return
        limit = idle_limit()
        if rt.unheld_since is None:
            rt.unheld_since = now
            self._save(rt)
        elif limit > 0 and now - rt.unheld_since >= limit:
            try:
                self.backend_for(rt).stop(rt)
            except AiravataError:
                pass
            self._let_go(rt.name)
            rt.state = RuntimeState.STOPPED
            rt.reason = f"idle: no notebook held it for {limit:g} s (AIRAVATA_MAGIC_IDLE_TIMEOUT)"
            self._save(rt)

    def switch(self, name: str) -> str:
        """Every later cell runs on ``name`` (``LOCAL``: the notebook's own kernel again)."""
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

    def release_link(self, name: str) -> None:
        """Close this process's own connection to a runtime; the runtime, its tunnels and this
        process's hold on it stay (e.g. a Jupyter server whose kernel client connects itself)."""
        self._let_go(name)

    # -- control -------------------------------------------------------------------------------
    def restart(self, name: str, timeout: float = 120) -> str:
        """A fresh kernel in the same allocation; waits until it answers."""
        rt = self.get(name)
        if rt.state.terminal:
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}; request it again")
        self.links.drop(name)
        changes = self.backend_for(rt).restart(rt)
        if changes:
            changes = dict(changes)
            rt.job_id = changes.pop("job_id", rt.job_id)
            rt.backend_state.update(changes)
        rt.state = RuntimeState.STARTING
        self._save(rt)
        self.wait(name, timeout=timeout)
        return f"runtime {name!r} restarted (variables cleared, same allocation)"

    def stop(self, name: str) -> str:
        """Stop a runtime (cancel its job, delete its pod, end its process) and close its
        tunnels. An unreadable record is removed, its job cancelled when the record says enough."""
        if name == LOCAL:
            raise InvalidArgument("'local' is the notebook's own kernel, not a requested runtime")
        validate_name(name)
        rt = self.store.load_any(name)
        if isinstance(rt, BrokenRecord):
            return self._remove_broken(rt)
        msg = f"runtime {name!r} stopped"
        try:  # also for terminal states: a failed pod or a dead kernel's job may still exist
            self.backend_for(rt).stop(rt)
        except RuntimeUnavailable:
            pass
        self._let_go(name)
        if not rt.state.terminal:
            rt.state, rt.reason = RuntimeState.STOPPED, "stopped by the user"
        else:
            msg = f"runtime {name!r} was already {rt.state.value}; cleaned up"
        self._save(rt)
        self._release(name)
        if self.current == name:
            self.current = LOCAL
            msg += "; cells run locally again"
        return msg

    def _remove_broken(self, broken: BrokenRecord) -> str:
        raw = broken.raw
        cancelled = ""
        try:
            rt = Runtime(name=broken.name, resource=str(raw["resource"]), kind=str(raw["kind"]),
                         job_id=raw.get("job_id"), profile=raw.get("profile"),
                         backend_state=dict(raw.get("backend_state") or {}))
            self.backend_for(rt).stop(rt)
            cancelled = f"; its {rt.kind} job {rt.job_id} was stopped" if rt.job_id else ""
        except (KeyError, TypeError, ValueError, AiravataError):
            cancelled = "; it did not say enough to stop its job, if any"
        self._let_go(broken.name)
        self._holding.discard(broken.name)
        self.store.forget(broken.name)
        return f"runtime {broken.name!r} had an unreadable record ({broken.reason}); removed{cancelled}"

    def stop_all(self) -> list[str]:
        """Stop every live runtime of this user, clean up dead ones (a kernel that stopped
        answering may still hold its job or process) and remove unreadable records."""
        out = []
        for item in list(self.store.all_records()):
            if isinstance(item, BrokenRecord) or not item.state.terminal or item.state == RuntimeState.DEAD:
                out.append(self.stop(item.name))
        return out

    def attach(self, name: str, timeout: float = 30) -> str:
        """Reconnect to a runtime that is still alive (e.g. after the notebook kernel restarted)."""
        rt = self.get(name)
        self._hold(name)
        self.refresh([rt])
        if rt.state.terminal:
            raise RuntimeUnavailable(f"runtime {name!r} is {rt.state.value}"
                                     f"{' (' + rt.reason + ')' if rt.reason else ''}; nothing to attach to")
        self.links.drop(name)
        self.wait(name, timeout=timeout)
        return f"attached to {name!r} ({rt.resource}, job {rt.job_id}); %switch_runtime {name} to run cells there"

    def authenticate(self, file: str | None = None, names: list[str] | None = None) -> list[AuthResult]:
        """Check each resource's credentials for real; one result per resource."""
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
    def rows(self) -> list[dict[str, Any]]:
        """One row per record (live ones refreshed first; unreadable ones as 'broken'), with the
        processes holding each live runtime ('nobody': its idle clock runs)."""
        from ..views import broken_row, runtime_row

        items = list(self.store.all_records())
        self.refresh([r for r in items if isinstance(r, Runtime)])
        out = []
        for item in items:
            if isinstance(item, BrokenRecord):
                out.append(broken_row(item.name, item.reason))
            else:
                holders = None if item.state.terminal else self.store.holders(item.name)
                out.append(runtime_row(item, holders=holders, current=item.name == self.current))
        return out

    def table(self) -> "pd.DataFrame":
        """All of this user's runtimes as a pandas DataFrame (``views.TABLE_COLUMNS``)."""
        from ..views import runtimes_frame

        return runtimes_frame(self.rows())

    def close(self, *, transports: bool = False) -> None:
        """Close this process's links, cancel walltime timers, release the backends' connections
        and stop holding runtimes (they keep running). ``transports``: also close the pooled SSH
        connections of the whole process (extension unload; they reopen on next use)."""
        for name in sorted(self._holding):
            self._release(name)
        self.links.close()
        self.walltime.close()
        for backend in self._backends.values():
            try:
                backend.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        ssh = sys.modules.get("airavata_magic.transport.ssh")
        if transports and ssh is not None:
            ssh.close_all()
