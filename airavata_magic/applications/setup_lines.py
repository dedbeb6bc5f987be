"""Setup lines: what ``%application add`` writes, and what existing lines already load.

Pure functions over text, unit-tested: ``module load a/1 b`` -> loads a/1 and b.
"""
from __future__ import annotations

import shlex

from .catalog import CONDA, MODULE, REGISTERED, Application, Catalog

_LOAD_VERBS = {"load", "add", "try-load", "try-add"}
_ML_VERBS = {"unload", "rm", "del", "purge", "list", "avail", "spider", "show", "swap", "switch", "restore",
             "save", "use", "unuse", "reset", "help", "whatis", "keyword", "describe", "refresh", "update"}


def loaded_modules(lines: list[str]) -> list[str]:
    """Module names (with ``/version`` when given) that ``module load`` / ``ml`` lines load, in order."""
    out: list[str] = []
    for line in lines:
        for part in line.replace("&&", ";").split(";"):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                continue
            args = [w for w in words[1:] if not w.startswith("-")]  # options may come before the verb
            if words[:1] == ["module"] and args[:1] and args[0] in _LOAD_VERBS:
                out += args[1:]
            elif words[:1] == ["ml"] and args:  # ml NAME... loads; ml VERB ... is like module VERB
                out += args[1:] if args[0] in _LOAD_VERBS else [] if args[0] in _ML_VERBS else args
    return out


def conda_activations(lines: list[str]) -> list[str]:
    """Environments that ``conda activate ENV`` lines activate."""
    out = []
    for line in lines:
        for part in line.replace("&&", ";").split(";"):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                continue
            if words[:2] == ["conda", "activate"] and len(words) > 2:
                out.append(words[-1])
    return out


def split(module: str) -> tuple[str, str]:
    """``psi4/1.9`` -> ("psi4", "1.9"); ``psi4`` -> ("psi4", "")."""
    name, _, version = module.rpartition("/") if "/" in module else (module, "", "")
    return name, version


def satisfied(requirement: str, loaded: list[str]) -> bool:
    """A required module (``cuda`` = any version, ``cuda/12.4`` = that one) is among ``loaded``."""
    rname, rversion = split(requirement)
    return any(split(m)[0] == rname and (not rversion or split(m)[1] in ("", rversion)) for m in loaded)


def lmod_init_line(lmod_pkg: str) -> str:
    """A line that defines ``module`` in a batch job's non-login shell (a no-op where it exists)."""
    return f"type module >/dev/null 2>&1 || . {shlex.quote(lmod_pkg.rstrip('/') + '/init/profile')}"


def lines_for(app: Application, catalog: Catalog) -> list[str]:
    """The setup line(s) that make ``app`` available in a job."""
    if app.source == MODULE:
        return [f"module load {shlex.quote(app.full_name)}"]
    if app.source == CONDA:
        base = catalog.conda_base or app.path
        return [f". {shlex.quote(base.rstrip('/') + '/etc/profile.d/conda.sh')} && conda activate {shlex.quote(app.path)}"]
    if app.source == REGISTERED:
        directory = app.path.rsplit("/", 1)[0] or "/"
        if directory.startswith("~/"):  # ~ is expanded by the shell only outside quotes
            return [f'export PATH="$HOME"/{shlex.quote(directory[2:])}:"$PATH"']
        return [f'export PATH={shlex.quote(directory)}:"$PATH"']
    raise ValueError(f"unknown source {app.source!r}")
