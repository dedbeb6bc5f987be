"""airavata-magic: run notebook cells on kernels in Slurm jobs, SSH hosts and Kubernetes pods.

``%load_ext airavata_magic`` registers the magics. ``import airavata_magic`` inside IPython does the
same (users of the older Cybershuttle magics type that); outside IPython it registers nothing.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manager import RuntimeManager

__version__ = "0.1.0"

_manager: "RuntimeManager | None" = None
_loaded: set[int] = set()


def get_manager() -> "RuntimeManager":
    """The process's one ``RuntimeManager`` (created on first use), shared by the magics, the
    command line and the session recorder."""
    global _manager
    if _manager is None:
        from .manager import RuntimeManager

        _manager = RuntimeManager()
    return _manager


def load_ipython_extension(ip: Any) -> None:
    """Register the magics, the cell router and the remote-error display on an IPython shell."""
    if id(ip) in _loaded:
        return
    from .magics import RemoteCellError, RuntimeMagics, show_remote_traceback
    from .routing import CellRouting, make_router
    from .fanout import magics as fanout_magics
    from .sessions import magics as session_magics
    from .storage import magics as storage_magics

    manager = get_manager()
    routing = CellRouting()
    magics = RuntimeMagics(ip, manager, routing)
    ip.register_magics(magics)
    ip.set_custom_exc((RemoteCellError,), show_remote_traceback)
    ip.events.register("pre_run_cell", routing.reset)
    session_magics.load(ip, manager, routing)
    storage_magics.load(ip, manager)
    from .applications import magics as application_magics  # %application, %resources, %usage

    application_magics.load(ip, manager)
    fanout_magics.load(ip, manager)
    ours = ip.magics_manager.magics
    line_names = {n for n, f in ours["line"].items() if getattr(f, "__self__", None) is not None
                  and type(f.__self__).__module__.startswith("airavata_magic")}
    cell_names = {n for n, f in ours["cell"].items() if getattr(f, "__self__", None) is not None
                  and type(f.__self__).__module__.startswith("airavata_magic")}
    ip.input_transformers_cleanup.append(
        make_router(lambda: manager.current, line_names, cell_names, enabled=lambda: routing.enabled)
    )
    _loaded.add(id(ip))


def unload_ipython_extension(ip: Any) -> None:
    """Stop routing cells (runtimes keep running; ``%attach_runtime`` finds them again)."""
    ip.input_transformers_cleanup[:] = [t for t in ip.input_transformers_cleanup
                                        if getattr(t, "__module__", "") != "airavata_magic.routing"]
    _loaded.discard(id(ip))
    if _manager is not None:  # links, walltime timers and pooled SSH connections end with the extension
        _manager.close(transports=True)


def record_value(name: str, value: Any) -> None:
    """Record a named value in the running notebook (collected by template sweeps)."""
    from .sessions.values import record

    record(name, value)


def _autoload() -> None:
    # Only when IPython is already running this process: never import it just to look.
    if "IPython" not in sys.modules:
        return
    ip = sys.modules["IPython"].get_ipython()
    if ip is not None:
        load_ipython_extension(ip)


_autoload()


# -- The Python API: `import airavata_magic as am; am.request_runtime(...)` --------------------
# Names resolve on first use, so `import airavata_magic` (and %load_ext) stays light.
# "module" gives the module itself (am.session.start), "module:attr" one of its attributes.
# A feature adds itself with ONE line here, e.g. "storage": "airavata_magic.storage.api".
_API: dict[str, str] = {
    "authenticate": "airavata_magic.api:authenticate",
    "request_runtime": "airavata_magic.api:request_runtime",
    "get_runtime": "airavata_magic.api:get_runtime",
    "runtimes": "airavata_magic.api:runtimes",
    "Runtime": "airavata_magic.api:Runtime",
    "RemoteError": "airavata_magic.api:RemoteError",
    "RemoteValue": "airavata_magic.api:RemoteValue",
    "session": "airavata_magic.api.session",
    "applications": "airavata_magic.applications",  # list/show/add/register (issue 12)
    "compute": "airavata_magic.compute",  # execute, resources, usage (issue 12)
    "storage": "airavata_magic.storage",  # locations, copy, dataset, push_vars/pull_vars (issue 9)
    "fanout": "airavata_magic.fanout",  # am.fanout.run / gather / retry / plot_hits / scale_run
}


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'airavata_magic' has no attribute {name!r}")
    import importlib

    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
