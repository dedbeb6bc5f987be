"""The runtime magics. Thin: parse arguments, call ``RuntimeManager``, show the result.

Every ``AiravataError`` becomes a one-line ``UsageError``; a remote cell's error becomes this
cell's error, shown with the remote traceback.
"""
from __future__ import annotations

import ast
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import checks
from .errors import RuntimeFailed
from .manager import RuntimeManager
from .relay import CellInterrupted, CellOutcome, NotebookSink
from .routing import CellRouting
from .runtime import LOCAL, Runtime, validate_name
from .usage import parse, user_errors
from .views import auth_rows, print_state_changes, status_bundle


class RemoteCellError(Exception):
    """A cell failed on a runtime. Subclasses carry the remote exception's name."""

    runtime: str = ""
    remote_traceback: list[str] = []


def remote_error(outcomes: list[CellOutcome]) -> RemoteCellError:
    """One local exception for the failed outcomes, named like the (first) remote one.

    A remote ``KeyboardInterrupt`` becomes one here too (callers see an interrupt), shown like
    any remote error with the remote kernel's own traceback, not this package's frames."""
    failed = [o for o in outcomes if o.status != "ok"]
    first = failed[0].error or {}
    ename = str(first.get("ename") or "RemoteError")
    bases: tuple[type, ...] = (RemoteCellError,)
    if ename == "KeyboardInterrupt":
        bases = (RemoteCellError, KeyboardInterrupt)
    cls = type(ename if ename.isidentifier() else "RemoteError", bases, {})
    evalue = str(first.get("evalue") or "")
    err = cls(evalue)
    err.runtime = ",".join(str(o.label) for o in failed)
    tb: list[str] = []
    for o in failed:
        e = o.error or {}
        if len(outcomes) > 1:
            tb.append(f"[{o.label}] {e.get('ename')}: {e.get('evalue')}")
        tb.extend(str(line) for line in (e.get("traceback") or [f"{e.get('ename')}: {e.get('evalue')}"]))
    err.remote_traceback = tb
    return err


def show_remote_traceback(shell, etype, value, tb, tb_offset=None) -> None:
    """IPython custom exception handler: show the remote traceback instead of our local frames.

    IPython's ``run_code`` calls the handler and displays nothing itself, so the handler shows
    the traceback through ``_showtraceback``, the hook ipykernel implements to publish ``error``.
    """
    stb = list(getattr(value, "remote_traceback", None) or [f"{etype.__name__}: {value}"])
    shell._showtraceback(etype, value, stb)


class RemoteResult:
    """A remote ``execute_result``: displayed with the remote MIME bundle, kept in ``Out``."""

    def __init__(self, data: dict[str, Any], metadata: dict[str, Any], runtime: str) -> None:
        self.data, self.metadata, self.runtime = data, metadata, runtime

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", f"<result from {self.runtime}>"))


def local_value(content: dict[str, Any], runtime: str) -> Any:
    """A plain Python value when the remote result is a literal (so ``_ + 1`` works), else a
    ``RemoteResult`` that displays exactly as the remote kernel rendered it."""
    data = content.get("data") or {}
    text = data.get("text/plain")
    if set(data) == {"text/plain"} and isinstance(text, str) and len(text) < 10000:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        else:
            if repr(value) == text:
                return value
    return RemoteResult(data, content.get("metadata") or {}, runtime)


@magics_class
class RuntimeMagics(Magics):
    """``%request_runtime``, ``%switch_runtime``, ``%%run_on`` and friends."""

    def __init__(self, shell: Any, manager: RuntimeManager, routing: CellRouting) -> None:
        super().__init__(shell)
        self.manager = manager
        self.routing = routing

    # -- resources ---------------------------------------------------------------------------
    @magic_arguments()
    @argument("resources", nargs="*", help="resources to check (default: all in the profile)")
    @argument("--file", help="profile file (default: $AIRAVATA_MAGIC_PROFILE, ./cybershuttle.yml, user config)")
    @line_magic
    @user_errors
    def authenticate(self, line: str) -> None:
        """Check each resource's credentials for real and print one row per resource."""
        args = parse(self.authenticate, line)
        rows = self.manager.authenticate(args.file, args.resources or None)
        print("\n".join(auth_rows(rows)))

    @magic_arguments()
    @argument("name", help="runtime name, or a preset from the profile's runtimes:")
    @argument("--file", help="profile file")
    @argument("--resource", help="resource from the profile (default: the preset's)")
    @argument("--use", help="candidates RESOURCE[:PARTITION][,...]; the one expected to start first wins")
    @argument("--cpus", type=str, help="CPU cores")
    @argument("--memory", help="memory: 512M, 8G, or MB as a bare number")
    @argument("--gpus", type=str, help="GPUs")
    @argument("--walltime", type=str, help="minutes")
    @argument("--partition", help="Slurm partition / queue")
    @argument("--account", help="Slurm account (allocation)")
    @argument("--image", help="container image (Kubernetes)")
    @argument("--node", help="run on this node (Slurm --nodelist, Kubernetes nodeName)")
    @line_magic
    @user_errors
    def request_runtime(self, line: str) -> None:
        """Submit a runtime and return at once with its job or pod id."""
        a = parse(self.request_runtime, line)
        overrides = {k: getattr(a, k) for k in ("cpus", "memory", "gpus", "walltime", "partition",
                                                "account", "image", "node")}
        from .api import request_runtime  # the API scripts call: one code path (same manager)

        print(request_runtime(a.name, file=a.file, resource=a.resource, use=a.use, keep=True, **overrides).message)

    @magic_arguments()
    @argument("name", help="runtime name")
    @argument("--live", action="store_true", help="update one status display in place")
    @argument("--timeout", type=str, help="give up after S seconds")
    @line_magic
    @user_errors
    def wait_for_runtime(self, line: str) -> None:
        """Block until the runtime's kernel answers; fail at once with the reason if it cannot start."""
        a = parse(self.wait_for_runtime, line)
        timeout = None if a.timeout is None else checks.seconds(a.timeout, "--timeout")
        name = validate_name(a.name)
        if a.live:
            from IPython.display import display

            handle = None
            rt0 = self.manager.get(name)
            last = (0.0, "")  # elapsed and log tail of the latest update

            def update(rt: Runtime, elapsed: float, log_tail: str = "") -> None:
                nonlocal handle, last
                last = (elapsed, "\n".join(log_tail.splitlines()[-6:]))
                bundle = status_bundle(rt, *last)
                if handle is None:
                    handle = display(bundle, raw=True, display_id=True)
                else:
                    handle.update(bundle, raw=True)

            try:
                rt = self.manager.wait(name, timeout=timeout, on_update=update)
            except RuntimeFailed as e:
                if handle is not None:
                    handle.update(status_bundle(self.manager.get(name), 0.0, e.log_tail), raw=True)
                raise
            # The outcome goes into the same display: one output area, changed in place.
            note = f"runtime {name!r} is ready ({rt.resource}, {rt.node or rt0.node or 'node unknown'})"
            final = status_bundle(rt, last[0], note=note)  # the log tail mattered while waiting
            if handle is None:
                display(final, raw=True)
            else:
                handle.update(final, raw=True)
        else:
            self.manager.wait(name, timeout=timeout, on_update=print_state_changes())

    # -- cells -------------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", help="runtime name, or 'local' for the notebook's own kernel")
    @line_magic
    @user_errors
    def switch_runtime(self, line: str) -> None:
        """Every later cell runs on NAME; ``%switch_runtime local`` comes back."""
        a = parse(self.switch_runtime, line)
        print(self.manager.switch(validate_name(a.name)))

    @cell_magic
    @user_errors
    def run_on(self, line: str, cell: str) -> Any:
        """%%run_on NAME[,NAME...]: run this cell on NAME, or on several runtimes at once."""
        names = [n.strip() for n in line.strip().split(",")]
        if not line.strip() or any(not n for n in names):
            raise UsageError("usage: %%run_on NAME[,NAME...] (runtime names separated by commas)")
        for n in names:
            validate_name(n)
        if len(set(names)) != len(names):
            raise UsageError(f"a runtime is named twice in {line.strip()!r}")
        if LOCAL in names:
            if len(names) > 1:
                raise UsageError("'local' cannot be combined with other runtimes in %%run_on")
            return self._run_here(cell)
        if not cell.strip():
            return None
        try:
            outcomes = self.manager.run(names, cell, NotebookSink(labelled=len(names) > 1),
                                        allow_stdin=bool(getattr(getattr(self.shell, "kernel", None), "_allow_stdin", True)))
        except CellInterrupted as e:
            # Show how the remote cells ended (their own KeyboardInterrupt), not our frames.
            if all(o.status == "ok" for o in e.outcomes):
                raise KeyboardInterrupt from None  # they had all finished: a plain local interrupt
            outcomes = e.outcomes
        self.routing.note_ran_on(names)
        if any(o.status != "ok" for o in outcomes):
            raise remote_error(outcomes)
        if len(outcomes) == 1:
            o = outcomes[0]
            return local_value(o.result, o.label or "") if o.result else None
        from IPython.display import publish_display_data

        for o in outcomes:
            if o.result:
                print(f"[{o.label}] result:", flush=True)
                publish_display_data(o.result.get("data", {}), o.result.get("metadata") or {})
        return None

    def _run_here(self, cell: str) -> Any:
        with self.routing.running_here():
            result = self.shell.run_cell(cell, store_history=False)
        if result.error_before_exec or result.error_in_exec:
            raise UsageError("the cell failed locally (see above)")
        return None

    # -- views -------------------------------------------------------------------------------
    @line_magic
    @user_errors
    def runtimes(self, line: str):
        """A DataFrame of this user's runtimes: name, resource, state, job id, node, resources, walltime left."""
        if line.strip():
            raise UsageError("%runtimes takes no arguments")
        from .api import runtimes

        return runtimes()

    @magic_arguments()
    @argument("name", help="runtime name")
    @line_magic
    @user_errors
    def stat_runtime(self, line: str):
        """Details of one runtime, including the GPUs its kernel sees and walltime left."""
        import pandas as pd

        a = parse(self.stat_runtime, line)
        info = self.manager.stat(validate_name(a.name))
        return pd.DataFrame({"value": [("" if v is None else str(v)) for v in info.values()]}, index=list(info))

    # -- control -----------------------------------------------------------------------------
    @magic_arguments()
    @argument("name", help="runtime name")
    @line_magic
    @user_errors
    def interrupt_runtime(self, line: str) -> None:
        """Interrupt the cell running on NAME."""
        print(self.manager.interrupt(validate_name(parse(self.interrupt_runtime, line).name)))

    @magic_arguments()
    @argument("name", help="runtime name")
    @line_magic
    @user_errors
    def restart_runtime(self, line: str) -> None:
        """Restart NAME's kernel in the same allocation (variables are cleared)."""
        print(self.manager.restart(validate_name(parse(self.restart_runtime, line).name)))

    @magic_arguments()
    @argument("name", nargs="?", help="runtime name")
    @argument("--all", action="store_true", help="stop every runtime of this user")
    @line_magic
    @user_errors
    def stop_runtime(self, line: str) -> None:
        """Cancel the job or delete the pod and close its tunnels; back to local if it was current."""
        a = parse(self.stop_runtime, line)
        if bool(a.name) == bool(a.all):
            raise UsageError("usage: %stop_runtime NAME | --all")
        if a.all:
            msgs = self.manager.stop_all()
            print("\n".join(msgs) if msgs else "no live runtimes")
        else:
            print(self.manager.stop(validate_name(a.name)))

    @magic_arguments()
    @argument("name", help="runtime name")
    @line_magic
    @user_errors
    def attach_runtime(self, line: str) -> None:
        """Reconnect to a runtime that is still alive (e.g. after the notebook kernel restarted)."""
        print(self.manager.attach(validate_name(parse(self.attach_runtime, line).name)))
