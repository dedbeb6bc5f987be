"""What a resource offers: Lmod modules and conda environments, asked in one shell command.

The command runs in a login shell on the resource (``bash -l``: ``module`` exists in login shells
only) over the resource's pooled SSH connection, or here for ``local``. It prints sections:

- ``@@lmod``: Lmod's machine-readable spider (``$LMOD_DIR/spider -o jsonSoftwarePage "$MODULEPATH"``,
  the JSON Lmod writes for a site's software page): every module of the tree, hierarchical ones
  included, with description, help, the modules that must be loaded first (``parent``) and the
  default version (``defaultVersionName``: the marked one, else the highest). Its sibling
  ``-o spider-json`` says the same at more length and cost ~20 ms more on 500 modulefiles. The
  answer is kept on the resource until a modulefile changes (``LMOD_QUERY``).
- ``@@avail``: instead, on a site with another module system (Environment Modules), the terse
  ``module -t avail`` listing: names and versions, ``(default)`` marks.
- ``@@conda``: ``conda info --json`` (the environments and the base prefix), when conda is there.
- ``@@lmodpkg``: ``$LMOD_PKG``, to write a setup line that defines ``module`` in a batch job.

Parsing is pure (``parse_output``); the module never imports paramiko at import time.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

# Lmod's spider reads and evaluates every modulefile; its JSON is kept on the resource, in
# ~/.cache/airavata-magic, and reused while no modulefile, directory of one, or MODULEPATH
# directory is newer than it (and for a day at most), as Lmod keeps its own user spider cache.
# $AM_REFRESH (``--refresh``) asks spider again. A home that cannot be written to gets no cache.
LMOD_QUERY = r"""
c="${XDG_CACHE_HOME:-$HOME/.cache}/airavata-magic"
f="$c/lmod-$(printf '%s' "${MODULEPATH:-}" | cksum | cut -d ' ' -f 1).json"
if [ -z "${AM_REFRESH:-}" ] && [ -s "$f" ] && [ -f "$f.dirs" ] && [ -z "$(find "$f" -mmin +1440)" ] && \
   [ -z "$( { printf '%s\n' "${MODULEPATH:-}" | tr ':' '\n'; cat "$f.dirs"; } | grep . | \
           xargs -d '\n' sh -c 'find "$@" -maxdepth 1 -newer "$0" -print -quit 2>/dev/null' "$f" | head -n 1)" ]; then
  cat "$f"
elif mkdir -p -m 700 "$c" 2>/dev/null && : > "$f.$$.stamp" 2>/dev/null; then
  "$LMOD_DIR/spider" -o jsonSoftwarePage "${MODULEPATH:-}" 2>/dev/null > "$f.$$"
  cat "$f.$$"
  grep -o '"path":"[^"]*"' "$f.$$" | sed -e 's/^"path":"//' -e 's/"$//' -e 's#\\/#/#g' -e 's#/[^/]*$##' | \
    sort -u > "$f.$$.dirs" && touch -r "$f.$$.stamp" "$f.$$" && mv -f "$f.$$.dirs" "$f.dirs" && mv -f "$f.$$" "$f"
  rm -f "$f.$$" "$f.$$.dirs" "$f.$$.stamp"
else
  "$LMOD_DIR/spider" -o jsonSoftwarePage "${MODULEPATH:-}" 2>/dev/null
fi
"""

QUERY = r"""
echo '@@lmodpkg'; printf '%s\n' "${LMOD_PKG:-}"
if [ -n "${LMOD_DIR:-}" ] && [ -x "$LMOD_DIR/spider" ]; then
  echo '@@lmod'
""" + LMOD_QUERY + r"""
elif type module >/dev/null 2>&1; then
  echo '@@avail'; module -t avail 2>&1
fi
if command -v conda >/dev/null 2>&1; then echo '@@conda'; conda info --json 2>/dev/null; fi
echo '@@end'
"""


def query(refresh: bool = False) -> str:
    """The shell script that asks a resource; ``refresh`` skips the resource-side spider cache."""
    return ("AM_REFRESH=1\n" if refresh else "") + QUERY


MODULE, CONDA, REGISTERED = "module", "conda", "registered"


@dataclasses.dataclass
class Application:
    """One version of one application on one resource."""

    name: str
    version: str
    source: str  # module | conda | registered
    resource: str
    default: bool = False
    description: str = ""
    help: str = ""
    path: str = ""  # modulefile, conda env prefix, or the registered command
    # Lmod hierarchy: the modules to load first, as alternatives (load every module of any one line).
    requires: list[list[str]] = dataclasses.field(default_factory=list)
    # The modulefile's prereq() calls (filled by ``show``): every item must hold, each a list of
    # alternatives (a name alone matches any version).
    prereqs: list[list[str]] = dataclasses.field(default_factory=list)
    conflicts: list[str] = dataclasses.field(default_factory=list)  # the modulefile's conflict() (by ``show``)
    private: bool | None = None  # registered applications only

    @property
    def full_name(self) -> str:
        return f"{self.name}/{self.version}" if self.version else self.name


@dataclasses.dataclass
class Catalog:
    """Everything one resource answered, as cached."""

    resource: str
    applications: list[Application]
    module_system: str  # "lmod", "modules" (another system: names only), or "" (none)
    lmod_pkg: str = ""  # where Lmod's init scripts are, for setup lines
    conda_base: str = ""
    fetched_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        # Shallow copies: dataclasses.asdict's deep recursion costs ~10 ms on 500 modules.
        d = dict(vars(self))
        d["applications"] = [dict(vars(a)) for a in self.applications]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Catalog":
        d = dict(d)
        d["applications"] = [Application(**a) for a in d.get("applications", [])]
        return cls(**d)


def _sections(text: str) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@") and line[2:].strip().isalpha():
            current = line[2:].strip()
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def parse_software_page(text: str, resource: str) -> list[Application]:
    """Applications from ``spider -o jsonSoftwarePage`` (a list of packages, each with its versions)."""
    try:
        packages = json.loads(text)
    except ValueError:
        return []
    apps: list[Application] = []
    for pkg in packages if isinstance(packages, list) else []:
        if not isinstance(pkg, dict):
            continue
        default = str(pkg.get("defaultVersionName") or "")
        for v in pkg.get("versions") or []:
            if not isinstance(v, dict) or v.get("hidden"):
                continue
            full = str(v.get("full") or "")
            name, _, version = full.rpartition("/") if "/" in full else (full, "", "")
            description = " ".join(str(v.get("description") or pkg.get("description") or "").split())
            parents = [[str(m) for m in line] for line in v.get("parent") or [] if isinstance(line, list)]
            apps.append(Application(
                name=name, version=version, source=MODULE, resource=resource, description=description,
                help=str(v.get("help") or "").strip(), path=str(v.get("path") or ""), requires=parents,
                default=bool(v.get("markedDefault")) or (bool(default) and str(v.get("versionName")) == default)))
    return apps


_AVAIL_ENTRY = re.compile(r"^(?P<full>[^\s(]+?)(?P<marks>(?:\([^)]*\))*)\s*$")


def parse_terse_avail(text: str, resource: str) -> list[Application]:
    """Applications from ``module -t avail`` (directory headers end with ':'; ``(default)`` marks)."""
    apps: dict[str, Application] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.endswith(":") or line.endswith("/") or line.startswith(("-", "ERROR", "Lmod")):
            continue
        m = _AVAIL_ENTRY.match(line)
        if not m:
            continue
        full = m.group("full")
        name, _, version = full.rpartition("/") if "/" in full else (full, "", "")
        app = apps.setdefault(full, Application(name=name, version=version, source=MODULE, resource=resource))
        app.default = app.default or "default" in m.group("marks")
    return list(apps.values())


def parse_conda_info(text: str, resource: str) -> tuple[list[Application], str]:
    """Conda environments (name = the prefix's last part, ``base`` for the root) and the base prefix."""
    try:
        info = json.loads(text)
    except ValueError:
        return [], ""
    base = str(info.get("root_prefix") or info.get("conda_prefix") or "")
    apps = []
    for prefix in info.get("envs") or []:
        prefix = str(prefix)
        name = "base" if prefix == base else prefix.rstrip("/").rsplit("/", 1)[-1]
        apps.append(Application(name=name, version="", source=CONDA, resource=resource, path=prefix,
                                description=f"conda environment at {prefix}",
                                default=prefix == str(info.get("default_prefix") or base)))
    return apps, base


def parse_output(text: str, resource: str, fetched_at: float) -> Catalog:
    """A ``Catalog`` from what ``QUERY`` printed."""
    s = _sections(text)
    apps: list[Application] = []
    system = ""
    if "lmod" in s:
        system = "lmod"
        apps += parse_software_page(s["lmod"], resource)
    elif "avail" in s:
        system = "modules"
        apps += parse_terse_avail(s["avail"], resource)
    conda_apps, base = parse_conda_info(s.get("conda", ""), resource) if "conda" in s else ([], "")
    apps += conda_apps
    apps.sort(key=lambda a: (a.name.lower(), a.source, _version_key(a.version)))
    return Catalog(resource=resource, applications=apps, module_system=system,
                   lmod_pkg=s.get("lmodpkg", "").strip(), conda_base=base, fetched_at=fetched_at)


def _version_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-_]", version))


_PREREQ = re.compile(r"^\s*(prereq|prereq_any)\s*\((?P<args>[^)]*)\)", re.MULTILINE)
_CONFLICT = re.compile(r"^\s*conflict\s*\((?P<args>[^)]*)\)", re.MULTILINE)


def parse_conflicts(modulefile: str) -> list[str]:
    """Modules a modulefile's ``conflict("a", "b/1")`` calls refuse to be loaded with."""
    return [n for m in _CONFLICT.finditer(modulefile) for n in re.findall(r"""["']([^"']+)["']""", m.group("args"))]


def parse_prereqs(modulefile: str) -> list[list[str]]:
    """What a modulefile's ``prereq()`` calls demand: a list of requirements, all of which must
    hold, each a list of alternatives. ``prereq("a", "b")`` -> [["a"], ["b"]];
    ``prereq_any("a", "b")`` -> [["a", "b"]]."""
    out: list[list[str]] = []
    for m in _PREREQ.finditer(modulefile):
        names = re.findall(r"""["']([^"']+)["']""", m.group("args"))
        if names:
            out.extend([[n] for n in names] if m.group(1) == "prereq" else [names])
    return out
