"""``%application``, ``%resources`` and ``%usage``: thin magics over ``applications.api`` and
``cluster.api``. ``load(ip, manager)`` registers them (called by ``load_ipython_extension``)."""
from __future__ import annotations

import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..usage import parse as _parse
from ..usage import user_errors as _user_errors

_ARITY = {"list": (0, 0), "show": (1, 1), "add": (1, 1), "register": (1, 1)}
_USAGE = {"show": "NAME[/VERSION]", "add": "NAME[/VERSION] --runtime PRESET|--resource R",
          "register": "NAME --command PATH --resource R"}


def _progress(text: str) -> Any:
    from IPython.display import display

    return display({"text/plain": text}, raw=True, display_id=True)


@magics_class
class ApplicationMagics(Magics):
    """Modules, conda environments and registered executables; the resources and their usage."""

    @magic_arguments()
    @argument("action", choices=list(_ARITY), help="list | show NAME[/VER] | add NAME[/VER] | register NAME")
    @argument("args", nargs="*", help="the application, for show, add and register")
    @argument("--resource", action="append", help="resource to ask (list: may repeat; default: all)")
    @argument("--search", help="list: keep names or descriptions containing this text")
    @argument("--runtime", help="add: the preset (in runtimes:) that gets the setup line")
    @argument("--command", help="register: path of the executable on the resource")
    @argument("--description", default="", help="register: one line shown in listings")
    @argument("--private", action="store_true", help="register: visible to you only (else shared in the profile)")
    @argument("--refresh", action="store_true", help="ask the resource again instead of the cached answer")
    @argument("--file", help="profile file (default: $AIRAVATA_MAGIC_PROFILE, ./cybershuttle.yml, user config)")
    @line_magic
    @_user_errors
    def application(self, line: str):
        """List, show, add to a runtime's setup, or register applications (Lmod modules, conda
        environments, your own executables) of the profile's resources."""
        from . import api

        a = _parse(self.application, line)
        lo, hi = _ARITY[a.action]
        if not lo <= len(a.args) <= hi:
            raise UsageError(f"%application {a.action} takes {_USAGE.get(a.action, 'no positional arguments')}")
        one_resource = None
        if a.resource and a.action != "list":
            if len(a.resource) > 1:
                raise UsageError(f"%application {a.action} takes one --resource")
            one_resource = a.resource[0]
        if a.action == "list":
            # One line updated in place as resources answer (instant when every answer is cached).
            handle = _progress("asking for modules and conda environments ...")
            t0, done = time.monotonic(), []

            def answered(resource: str) -> None:
                done.append(resource)
                handle.update({"text/plain": f"answered: {', '.join(done)} ({time.monotonic() - t0:.1f} s)"}, raw=True)

            df = api.list_applications(a.resource, a.search, refresh=a.refresh, file=a.file, progress=answered)
            handle.update({"text/plain": f"{len(df)} applications from {', '.join(done) or 'no resource'} "
                                         f"in {time.monotonic() - t0:.1f} s"}, raw=True)
            for note in df.attrs.get("skipped", []):
                print(f"left out {note}")
            return df
        if a.action == "show":
            return api.show(a.args[0], one_resource, refresh=a.refresh, file=a.file)
        if a.action == "add":
            print(api.add(a.args[0], runtime=a.runtime, resource=one_resource, refresh=a.refresh, file=a.file))
            return None
        if not a.command or not one_resource:
            raise UsageError("usage: %application register NAME --command PATH --resource R [--description T] [--private]")
        print(api.register(a.args[0], a.command, one_resource, description=a.description, private=a.private, file=a.file))
        return None

    @magic_arguments()
    @argument("--resource", help="one resource (default: all in the profile)")
    @argument("--file", help="profile file")
    @line_magic
    @_user_errors
    def resources(self, line: str):
        """The profile's resources: kind, host, partitions with their state, nodes, CPUs and GPUs."""
        from ..cluster import api

        a = _parse(self.resources, line)
        return api.resources(a.resource, file=a.file)

    @magic_arguments()
    @argument("--since", default="7d", help="how far back: 12h, 7d, 2w (default 7d)")
    @argument("--resource", help="one slurm resource (default: every slurm resource)")
    @argument("--jobs", action="store_true", help="one row per job instead of totals")
    @argument("--file", help="profile file")
    @line_magic
    @_user_errors
    def usage(self, line: str):
        """Your jobs and consumption from Slurm accounting: CPU-hours, GPU-hours, jobs by state,
        per account and partition; runtimes started here are counted in airavata_jobs."""
        from ..cluster import api

        a = _parse(self.usage, line)
        df = api.usage(a.resource, a.since, jobs=a.jobs, file=a.file)
        for note in df.attrs.get("skipped", []):
            print(note)
        return df


def load(ip: Any, manager: Any) -> None:
    """Register ``%application``, ``%resources`` and ``%usage`` on ``ip``."""
    ip.register_magics(ApplicationMagics(ip))
