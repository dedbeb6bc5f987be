"""The applications API: what the magics and the command line call (``am.applications.*``).

Every function takes an optional ``file`` (the profile, found as usual when None) and returns a
pandas DataFrame or a one-line message; a bad name, version or setup raises ``InvalidArgument``
with one line that says what to do.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import shlex
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .. import profile as profiles
from ..errors import AiravataError, InvalidArgument
from . import cache, registry, setup_lines
from .catalog import MODULE, REGISTERED, Application, Catalog, parse_conflicts, parse_prereqs
from .shell import REMOTE_KINDS, kind_phrase, run_script

if TYPE_CHECKING:
    import pandas as pd

    from ..profile import Resource

COLUMNS = ["resource", "name", "version", "default", "source", "description", "requires", "path"]
ANSWERING_KINDS = ("local", *REMOTE_KINDS)


def _resources(prof: profiles.Profile, names: str | Sequence[str] | None) -> list["Resource"]:
    if isinstance(names, str):
        names = [names]
    if not names:
        return [r for r in prof.resources.values() if r.kind in ANSWERING_KINDS]
    out = []
    for n in names:
        r = prof.resource(n)
        if r.kind not in ANSWERING_KINDS:
            raise InvalidArgument(f"{n} is {kind_phrase(r.kind)} resource: its image decides what is installed; "
                                  "applications are listed on slurm, ssh and local resources")
        out.append(r)
    return out


def _catalogs(resources: list["Resource"], refresh: bool, progress: Callable[[str], None] | None = None,
              failures: list[str] | None = None) -> dict[str, Catalog]:
    """One query per resource, all at once (each over its own pooled SSH connection);
    ``progress(resource)`` is called as each one answers. With ``failures``, a resource that
    cannot answer is noted there (one line) instead of failing the whole listing."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(resources))) as pool:
        futures = {pool.submit(cache.catalog_of, r, refresh=refresh): r.name for r in resources}
        out = {}
        for f in concurrent.futures.as_completed(futures):
            try:
                out[futures[f]] = f.result()
            except AiravataError as e:
                if failures is None:
                    raise
                failures.append(f"{futures[f]}: {e}")
            if progress is not None:
                progress(futures[f])
        return out


def _apps(prof: profiles.Profile, res: "Resource", catalog: Catalog) -> list[Application]:
    return catalog.applications + registry.registered(prof, res.name)


def _row(a: Application) -> dict[str, Any]:
    return {"resource": a.resource, "name": a.name, "version": a.version, "default": a.default, "source": a.source,
            "description": a.description, "requires": " or ".join(", ".join(line) for line in a.requires),
            "path": a.path}


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


def list_applications(resource: str | Sequence[str] | None = None, search: str | None = None, *,
                      refresh: bool = False, file: str | None = None,
                      progress: Callable[[str], None] | None = None) -> "pd.DataFrame":
    """Modules, conda environments and registered executables of the profile's resources (or of
    ``resource``), one row per version; ``search`` keeps rows whose name or description contain it
    (case-insensitive). Answers are cached per resource for an hour; ``refresh`` asks again.
    ``progress(resource)`` is called as each resource answers (for a progress display). When no
    resource is named, one that cannot be reached is left out and said in ``df.attrs["skipped"]``."""
    if search is not None and (not isinstance(search, str) or not search.strip()):
        raise InvalidArgument("--search needs some text, e.g. --search psi4")
    prof = profiles.load_profile(file)
    resources = _resources(prof, resource)
    failures: list[str] | None = [] if not resource else None
    catalogs = _catalogs(resources, refresh, progress, failures)
    needle = search.strip().lower() if search else None
    rows = []
    for res in resources:
        if res.name not in catalogs:
            continue
        for a in _apps(prof, res, catalogs[res.name]):
            if needle is None or needle in a.name.lower() or needle in a.description.lower():
                rows.append(_row(a))
    df = _frame(rows, COLUMNS)
    df.attrs["skipped"] = failures or []
    return df


def _parse_ref(app: str) -> tuple[str, str]:
    if not isinstance(app, str) or not app.strip() or any(c.isspace() or ord(c) < 32 for c in app):
        raise InvalidArgument(f"invalid application {app!r}: write NAME or NAME/VERSION, e.g. psi4/1.9")
    return setup_lines.split(app.strip())


def _find(prof: profiles.Profile, res: "Resource", app: str, refresh: bool) -> tuple[list[Application], Catalog]:
    """The versions of ``app`` on ``res`` (the one asked for, or all); asks again once when the
    cached answer does not know the name (it may have been installed since)."""
    name, version = _parse_ref(app)
    for attempt in (0, 1):
        catalog = cache.catalog_of(res, refresh=refresh or attempt == 1)
        everything = _apps(prof, res, catalog)
        # A name may itself contain '/' (Lmod hierarchies): try the whole reference as a name too.
        found = [a for a in everything if a.name == name] or [a for a in everything if a.name == app]
        if found or refresh:
            break
    if not found:
        hint = "no module system and no conda there" if not catalog.module_system and not catalog.conda_base else \
            f"`application list --resource {res.name} --search {shlex.quote(name)}` shows what exists"
        raise InvalidArgument(f"unknown application {name!r} on {res.name}; {hint}")
    if version and found[0].name == name:
        exact = [a for a in found if a.version == version]
        if not exact:
            versions = ", ".join(a.version + (" (default)" if a.default else "") for a in found)
            raise InvalidArgument(f"{name} has no version {version!r} on {res.name}; versions: {versions}")
        found = exact
    return found, catalog


def _with_prereqs(res: "Resource", apps: list[Application]) -> list[Application]:
    """Read the ``prereq()`` and ``conflict()`` calls of the modulefiles (one command)."""
    files = [a.path for a in apps if a.source == MODULE and a.path.endswith(".lua")]
    if not files:
        return apps
    script = "grep -sHE '^[[:space:]]*(prereq(_any)?|conflict)[[:space:]]*\\(' -- " + " ".join(shlex.quote(f) for f in files) + "; true"
    _, out, _ = run_script(res, script, login=False)
    by_file: dict[str, list[str]] = {}
    for line in out.splitlines():
        path, _, code = line.partition(".lua:")
        by_file.setdefault(path + ".lua", []).append(code)
    return [dataclasses.replace(a, prereqs=parse_prereqs("\n".join(by_file.get(a.path, []))),
                                conflicts=parse_conflicts("\n".join(by_file.get(a.path, [])))) for a in apps]


def show(app: str, resource: str | None = None, *, refresh: bool = False, file: str | None = None) -> "pd.DataFrame":
    """Every version of ``app`` (``NAME`` or ``NAME/VERSION``) on ``resource`` (or on every
    resource that has it): description, help text, what must be loaded first (Lmod hierarchy and
    the modulefile's ``prereq()``), and the modulefile, conda environment or command path."""
    prof = profiles.load_profile(file)
    resources = _resources(prof, resource)
    rows, misses = [], []
    for res in resources:
        try:
            found, _ = _find(prof, res, app, refresh)
        except InvalidArgument as e:
            if resource is not None:
                raise
            misses.append(str(e))
            continue
        for a in _with_prereqs(res, found):
            row = _row(a)
            row["prerequisites"] = " and ".join(" or ".join(alts) for alts in a.prereqs)
            row["conflicts"] = ", ".join(a.conflicts)
            row["help"] = a.help
            row["private"] = a.private
            rows.append(row)
    if not rows:
        raise InvalidArgument(misses[0] if len(misses) == 1 else f"unknown application {app!r} on every resource "
                              f"({', '.join(r.name for r in resources)}); `application list --search` finds names")
    return _frame(rows, [*COLUMNS, "prerequisites", "conflicts", "help", "private"])


def add(app: str, *, runtime: str | None = None, resource: str | None = None, refresh: bool = False,
        file: str | None = None) -> str:
    """Add the setup line that makes ``app`` available (``module load NAME/VERSION``, a conda
    activation, or a registered command's directory on PATH) to the preset ``runtime`` or to
    ``resource`` in the profile, editing ``cybershuttle.yml`` in place. Refuses an unknown name or
    version, a second version of a module already in the setup, and a module whose prerequisites
    are not loaded by the setup yet. Returns what was done."""
    from . import yamledit

    if (runtime is None) == (resource is None):
        raise InvalidArgument("say where to add it: --runtime PRESET or --resource RESOURCE (one of them)")
    prof = profiles.load_profile(file)
    if prof.path is None:
        raise InvalidArgument("no cybershuttle.yml found; create one (or pass --file) before adding applications")
    yamledit.check_writable(prof.path)  # before asking the resource: nothing to do if it cannot be saved
    if runtime is not None:
        preset = prof.presets.get(runtime)
        if preset is None:
            raise InvalidArgument(f"no preset {runtime!r} in {prof.path}; presets: {', '.join(sorted(prof.presets)) or 'none'}")
        res_names = [u.split(':')[0] for u in preset.use] or [preset.resource]
        if len(set(res_names)) != 1:
            raise InvalidArgument(f"preset {runtime!r} may run on {', '.join(sorted(set(res_names)))}; "
                                  "add the application to each resource with --resource")
        res = prof.resource(str(res_names[0]))
        target, where = ("runtimes", runtime), f"runtimes.{runtime}.setup"
        existing = list(res.settings.get("setup", [])) + list(preset.spec.setup or [])
    else:
        res = prof.resource(str(resource))
        target, where = ("resources", res.name), f"resources.{res.name}.setup"
        existing = list(res.settings.get("setup", []))
    if res.kind not in REMOTE_KINDS:
        raise InvalidArgument(f"{res.name} is {kind_phrase(res.kind)} resource, which runs no setup lines; "
                              "add applications to slurm or ssh resources and their presets")
    found, catalog = _find(prof, res, app, refresh)
    chosen = next((a for a in found if a.default), found[0]) if len(found) > 1 else found[0]
    lines = setup_lines.lines_for(chosen, catalog)
    if chosen.source == MODULE:
        chosen = _with_prereqs(res, [chosen])[0]
        if _check_module(chosen, existing, where, runtime, res.name):
            return f"{where} already loads {chosen.full_name}; nothing changed"
        if catalog.module_system == "lmod" and catalog.lmod_pkg:
            init = setup_lines.lmod_init_line(catalog.lmod_pkg)
            if init not in existing:
                lines = [init, *lines]
    elif chosen.source != REGISTERED:
        active = setup_lines.conda_activations(existing)
        if chosen.path in active:
            return f"{where} already activates {chosen.path}; nothing changed"
        if active:
            raise InvalidArgument(f"{where} already activates the conda environment {active[0]}; "
                                  "a job has one active environment: remove that line first")
    elif any(line in existing for line in lines):
        return f"{where} already puts {chosen.name} on PATH; nothing changed"

    def change(doc: Any) -> str:
        body = yamledit.section(doc, *target)
        if body is None:
            raise AiravataError(f"{'.'.join(target)} is not in {prof.path} any more; reload and try again")
        yamledit.append_lines(body, "setup", lines)
        return f"added {'; '.join(repr(line) for line in lines)} to {where} in {prof.path}"

    return str(yamledit.edit(prof.path, change))


def _check_module(app: Application, existing: list[str], where: str, runtime: str | None, resource: str) -> bool:
    """Refuse a second version or missing prerequisites; True when the module is already loaded."""
    loaded = setup_lines.loaded_modules(existing)
    same = [m for m in loaded if setup_lines.split(m)[0] == app.name]
    if same:
        if any(setup_lines.split(m)[1] in ("", app.version) for m in same):
            return True
        raise InvalidArgument(f"{where} already loads {same[0]}; one version of a module at a time: "
                              f"remove that line first to use {app.full_name}")
    flag = f"--runtime {runtime}" if runtime else f"--resource {resource}"
    if app.requires and not any(all(setup_lines.satisfied(m, loaded) for m in line) for line in app.requires):
        first = app.requires[0]
        raise InvalidArgument(f"{app.full_name} needs {', '.join(first)} loaded first: run "
                              f"`application add {first[0]} {flag}` before adding {app.full_name}")
    clashing = [m for m in loaded if any(setup_lines.satisfied(c, [m]) for c in app.conflicts)]
    if clashing:
        raise InvalidArgument(f"{app.full_name} conflicts with {clashing[0]}, which {where} already loads "
                              "(conflict() in its modulefile); remove that line first")
    for alternatives in app.prereqs:
        if not any(setup_lines.satisfied(m, loaded) for m in alternatives):
            raise InvalidArgument(f"{app.full_name} needs {' or '.join(alternatives)} loaded first (prereq in its "
                                  f"modulefile): run `application add {alternatives[0]} {flag}` first")
    return False


def register(name: str, command: str, resource: str, *, description: str = "", private: bool = False,
             file: str | None = None) -> str:
    """Register an executable on ``resource`` as application ``name``. Private ones are kept in
    this user's state directory; shared ones go into the profile's ``applications:`` section, for
    everyone who uses that profile. The command must exist and be executable there."""
    registry.check_name(name)
    registry.check_command(command)
    if description and any(ord(c) < 32 for c in description):
        raise InvalidArgument("--description must be one line of text")
    prof = profiles.load_profile(file)
    res = prof.resource(resource)
    if res.kind not in ANSWERING_KINDS:
        raise InvalidArgument(f"{resource} is {kind_phrase(res.kind)} resource; register executables on slurm, ssh or local resources")
    path = f'"$HOME"/{shlex.quote(command[2:])}' if command.startswith("~/") else shlex.quote(command)
    rc, _, _ = run_script(res, f"test -f {path} && test -x {path}", login=False)
    if rc != 0:
        raise InvalidArgument(f"{command} is not an executable file on {resource}; check the path (chmod +x?)")
    if private:
        entries = [e for e in registry.private_entries() if not (e.get("name") == name and e.get("resource") == resource)]
        entries.append({"name": name, "resource": resource, "command": command, "description": description})
        registry.save_private(entries)
        return f"registered {name} ({command}) on {resource}, private to you"
    if prof.path is None:
        raise InvalidArgument("no cybershuttle.yml to share the application in; use --private or pass --file")
    from . import yamledit

    def change(doc: Any) -> str:
        apps = yamledit.section(doc, "applications", create=True)
        entry = {"resource": resource, "command": command}
        if description:
            entry["description"] = description
        if name in apps and apps[name].get("resource") != resource:
            raise InvalidArgument(f"{name} is already registered on {apps[name].get('resource')} in {prof.path}; "
                                  "choose another name")
        apps[name] = entry
        return f"registered {name} ({command}) on {resource} in {prof.path}, for everyone who uses it"

    return str(yamledit.edit(prof.path, change))
