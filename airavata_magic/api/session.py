"""Sessions from Python (``am.session``): record a script's API calls, list, show and export.

``am.session.start("run1")`` in a script journals every later API call; ``am.session.export``
writes a notebook whose cells make the same calls, which ``papermill`` re-runs. Sessions
recorded in a notebook (``%session start``) or a shell (``airavata-magic session start``) are
listed, shown and exported by the same functions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import recording

if TYPE_CHECKING:
    import nbformat
    import pandas as pd

__all__ = ["start", "stop", "active", "list", "show", "export", "load"]


def start(name: str, *, append: bool = False) -> str:
    """Record every later API call of this process into session ``name``.

    Each call becomes a notebook cell with the same call, its arguments (secrets redacted), a
    result summary, its duration, and the output of ``Runtime.run``. ``append``: continue an
    existing script session. Returns where the session is written."""
    return recording.start(name, append=append)


def stop() -> str:
    """Stop recording; returns how many calls were recorded and where."""
    return recording.stop()


def active() -> str | None:
    """The name of the session this process is recording, or None."""
    return recording.active()


def list() -> pd.DataFrame:  # noqa: A001 - am.session.list() reads as the CLI's `session list`
    """All recorded sessions as a DataFrame: name, kind (notebook, script, shell), cells,
    runtimes, started, path."""
    from ..sessions.journal import SessionStore

    return SessionStore().table()


def show(name: str) -> pd.DataFrame:
    """The cells (calls, or shell commands) of one session as a DataFrame."""
    from ..sessions.journal import SessionStore, cells_table

    return cells_table(SessionStore().read(name))


def export(name: str, path: str) -> str:
    """Write session ``name`` as a notebook at ``path`` (``.ipynb``) that ``papermill`` re-runs.

    A script session exports one cell per recorded call; a notebook session as ``%session
    export`` does; a shell session one ``%%bash`` cell per command. Returns the path."""
    from ..errors import InvalidArgument
    from ..sessions import export as nbexport
    from ..sessions.journal import SessionStore

    if not isinstance(path, str) or not path.endswith(".ipynb"):
        raise InvalidArgument(f"export to a .ipynb path, not {path!r}")
    nbexport.write(nbexport.build(SessionStore().read(name)), path)
    return path


def build_notebook(nb: dict[str, Any]) -> nbformat.NotebookNode:
    """The exported notebook of a script session (called by ``sessions.export.build``)."""
    import nbformat

    session = nb.get("metadata", {}).get("airavata", {}).get("session", {})
    name = session.get("name", "session")
    out = nbformat.v4.new_notebook()
    out.metadata.update({k: v for k, v in nb.get("metadata", {}).items() if k in ("kernelspec", "language_info")})
    out.metadata["airavata"] = {"exported_from": name, "kind": "script"}
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    failed = [i for i, c in enumerate(cells, 1) if c.get("metadata", {}).get("airavata", {}).get("status") != "ok"]
    note = f"Replay of script session `{name}` recorded with airavata-magic: one cell per API call."
    if failed:
        note += f" Left out: call(s) {', '.join(map(str, failed))}, which failed when recorded."
    out.cells.append(nbformat.v4.new_markdown_cell(note))
    setup = "import airavata_magic as am"
    if session.get("secrets"):
        setup += ("\nfrom airavata_magic.sessions.values import secret"
                  "  # each secret: $AIRAVATA_SECRET_<NAME>, else asked for")
    out.cells.append(nbformat.v4.new_code_cell(setup, metadata={"tags": ["airavata-setup"]}))
    requested: dict[str, str] = {}  # runtime -> variable, for runtimes the replay must stop
    for i, c in enumerate(cells, 1):
        meta = c.get("metadata", {}).get("airavata", {})
        if i in failed:
            continue
        src = c.get("source", "")
        src = src if isinstance(src, str) else "".join(src)
        call, rts = meta.get("call"), meta.get("runtimes") or []
        if call == "request_runtime" and rts:
            requested[rts[0]] = src.split(" = ", 1)[0]
        elif call == "stop" and rts:
            requested.pop(rts[0], None)
        out.cells.append(nbformat.v4.new_code_cell(src, metadata={"airavata": {"recorded_call": i, "call": call}}))
    if requested:
        # A replay in a notebook kernel keeps runtimes (IPython): stop what the script left to exit.
        stops = "\n".join(f"{var}.stop()" for var in requested.values())
        out.cells.append(nbformat.v4.new_code_cell(stops, metadata={"tags": ["airavata-teardown"]}))
    return out


def load(name: str, *, dry_run: bool = False) -> int:
    """Re-run a script session's calls in this process, in order, stopping at the first that
    fails (calls that failed when recorded are skipped); ``dry_run`` prints the code instead.
    Returns 0 when every call succeeded, else 1 (the error is printed)."""
    import sys
    import traceback

    from ..errors import InvalidArgument
    from ..sessions.journal import SessionStore

    nb = SessionStore().read(name)
    if nb.get("metadata", {}).get("airavata", {}).get("session", {}).get("kind") != "script":
        raise InvalidArgument(f"session {name!r} is not a script session")
    cells = [c for c in build_notebook(nb).cells if c.cell_type == "code"]
    if dry_run:
        print("\n".join(c.source for c in cells))
        return 0
    namespace: dict[str, Any] = {"__name__": "__airavata_session__"}
    for i, c in enumerate(cells, 1):
        try:
            exec(compile(c.source, f"<session {name} cell {i}>", "exec"), namespace)  # noqa: S102 - the user's own recorded calls
        except Exception as e:  # noqa: BLE001 - report which call failed, then stop
            traceback.print_exc()
            print(f"error: session {name!r} stopped at cell {i} of {len(cells)}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 1
    return 0
