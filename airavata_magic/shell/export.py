"""A shell session -> a notebook of ``%%bash`` cells, one per command, that papermill re-runs.

Each ``%%bash`` cell is its own bash process, so each starts with ``cd`` to the directory its
command ran in; shell variables set by one command are not seen by the next cell (``session
load`` runs them all in one shell instead). A failing command fails its cell (IPython's
``%%bash`` raises on a non-zero exit), so papermill stops there. Commands that failed when
recorded are left out, and a markdown note says so. ``NAME=<redacted>`` becomes
``NAME="$AIRAVATA_SECRET_NAME"``, checked at run time.
"""
from __future__ import annotations

import shlex
from typing import Any

from . import journal as shell_journal
from .replay import _SECRET_RE


def _secret_from_env(m) -> str:
    from ..sessions.values import env_var

    var = env_var(m.group("name"))
    return f'{m.group("name")}="${{{var}:?set {var} to replay this command}}"'


def build(nb: dict[str, Any]):
    """The exported notebook (nbformat) of a shell session journal."""
    import nbformat

    session = nb.get("metadata", {}).get("airavata", {}).get("session", {})
    name = session.get("name", "session")
    out = nbformat.v4.new_notebook()
    out.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out.metadata["airavata"] = {"exported_from": name, "kind": "shell"}
    cmds = shell_journal.commands(nb)
    failed = [i for i, (_, m) in enumerate(cmds, 1) if m.get("status") == "error"]
    note = f"Replay of shell session `{name}` recorded with airavata-magic: one `%%bash` cell per command."
    if failed:
        note += f" Left out: command(s) {', '.join(map(str, failed))}, which failed when recorded."
    out.cells.append(nbformat.v4.new_markdown_cell(note))
    for i, (cmd, meta) in enumerate(cmds, 1):
        if i in failed:
            continue
        body = _SECRET_RE.sub(_secret_from_env, cmd)
        cwd = meta.get("cwd")
        src = "%%bash\n" + (f"cd {shlex.quote(cwd)}\n" if cwd else "") + body
        out.cells.append(nbformat.v4.new_code_cell(src, metadata={"airavata": {"recorded_command": i, "cwd": cwd}}))
    return out
