"""The profile, ``cybershuttle.yml``: resources, runtime presets and storage locations.

Found by ``--file F``, else ``$AIRAVATA_MAGIC_PROFILE``, else ``./cybershuttle.yml``, else the
user config dir. Every error names the file, the line and the key; unknown keys are errors.
The ``local`` resource always exists, with or without a file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import checks, paths
from .errors import AiravataError, ProfileError
from .runtime import LOCAL, SPEC_FIELDS, RuntimeSpec
from .yamlfile import FileFormatError, LineDict, parse_yaml

PROFILE_NAME = "cybershuttle.yml"


def cost_prices(value: Any) -> dict[str, float]:
    """A resource's ``cost: {cpu_hour: 0.05, gpu_hour: 2.5}``: non-negative prices per hour."""
    if not isinstance(value, dict) or not value or set(value) - {"cpu_hour", "gpu_hour"}:
        raise ValueError("cost must be a mapping with cpu_hour and/or gpu_hour, e.g. {cpu_hour: 0.05, gpu_hour: 2.5}")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"cost.{k} must be a non-negative number, got {v!r}")
        out[str(k)] = float(v)
    return out


# -- the profile -----------------------------------------------------------------------------
@dataclass
class Resource:
    """One entry of the profile's ``resources:`` section, validated."""

    name: str
    kind: str
    settings: dict[str, Any]  # validated keys of this kind, without `kind`
    source: str = "<built-in>"  # file:line it came from, for messages


@dataclass
class Preset:
    """A named runtime preset from ``runtimes:``."""

    name: str
    resource: str | None
    use: list[str]
    spec: RuntimeSpec


@dataclass
class Profile:
    """A validated profile: resources (``local`` always among them), presets, storage."""

    path: str | None  # None when no file was found: only `local` exists
    resources: dict[str, Resource] = field(default_factory=dict)
    presets: dict[str, Preset] = field(default_factory=dict)
    storage: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)  # {registry: STORAGE:PATH} (issue on data)
    applications: dict[str, dict[str, str]] = field(default_factory=dict)  # shared registered executables

    def resource(self, name: str) -> Resource:
        try:
            return self.resources[name]
        except KeyError:
            where = self.path or "no profile file"
            raise AiravataError(
                f"unknown resource {name!r} ({where}); known: {', '.join(sorted(self.resources))}"
            ) from None


LOCAL_RESOURCE = Resource(name=LOCAL, kind="local", settings={})


def find_profile(explicit: str | None = None) -> Path | None:
    """The profile file to use, following the search order, or None when there is none."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ProfileError(str(p), None, None, "file not found (given with --file)")
        return p
    env = os.environ.get("AIRAVATA_MAGIC_PROFILE")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ProfileError(str(p), None, None, "file not found (named by $AIRAVATA_MAGIC_PROFILE)")
        return p
    for p in (Path.cwd() / PROFILE_NAME, paths.config_dir() / PROFILE_NAME):
        if p.is_file():
            return p
    return None


_cache: dict[tuple[str, float, int], Profile] = {}


def load_profile(explicit: str | None = None) -> Profile:
    """Find, parse and validate the profile (cached per file and modification time)."""
    p = find_profile(explicit)
    if p is None:
        return Profile(path=None, resources={LOCAL: LOCAL_RESOURCE})
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_mtime, st.st_size)
        if key not in _cache:
            _cache.clear()
            _cache[key] = parse_profile(p.read_text(encoding="utf-8"), str(p))
        return _cache[key]
    except OSError as e:
        raise ProfileError(str(p), None, None, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ProfileError(str(p), None, None, "not UTF-8 text") from None


def parse_profile(source: str, filename: str = PROFILE_NAME) -> Profile:
    """Parse and validate profile text. Raises ``ProfileError`` naming file, line and key."""
    from .backends import KINDS, backend_class  # the backend registry imports no client library

    try:
        doc = parse_yaml(source, filename)
    except FileFormatError as e:
        raise ProfileError(filename, e.line, None, e.message) from None
    if doc is None:
        doc = LineDict()
    if not isinstance(doc, LineDict):
        raise ProfileError(filename, 1, None, "the top level must be a mapping with resources:, runtimes:, storage:")

    def err(d: LineDict, key: Any, msg: str) -> ProfileError:
        return ProfileError(filename, d.line_of(key) if isinstance(d, LineDict) else None, str(key), msg)

    for key in doc:
        if key not in ("resources", "runtimes", "storage", "datasets", "applications"):
            raise err(doc, key, "unknown top-level key; use resources, runtimes, storage, datasets or applications")

    profile = Profile(path=filename, resources={LOCAL: LOCAL_RESOURCE})

    resources = doc.get("resources") or LineDict()
    if not isinstance(resources, dict):
        raise err(doc, "resources", "must be a mapping of resource names to settings")
    for name, body in resources.items():
        rkey = f"resources.{name}"
        try:
            checks.key_name(name, "resource name")
        except AiravataError:
            raise err(resources, name, "resource names use letters, digits, '_', '.', '-'") from None
        if not isinstance(body, LineDict):
            raise err(resources, name, "must be a mapping with at least kind:")
        kind = body.get("kind")
        if kind is None:
            raise ProfileError(filename, body.line, rkey, f"missing kind: (one of {', '.join(KINDS)})")
        if kind not in KINDS:
            raise err(body, "kind", f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        try:
            cls = backend_class(kind)
        except AiravataError as e:
            raise err(body, "kind", str(e)) from None
        settings: dict[str, Any] = {}
        for key, value in body.items():
            if key == "kind":
                continue
            if key == "cost":  # -- prices for every kind (scale runs report cost): {cpu_hour, gpu_hour}
                try:
                    settings[key] = cost_prices(value)
                except ValueError as e:
                    raise err(body, key, f"{rkey}: {e}") from None
                continue
            if key not in cls.profile_keys:
                known = ", ".join(sorted(cls.profile_keys)) or "none"
                raise err(body, key, f"unknown key for a {kind} resource ({rkey}); known: {known}")
            try:
                settings[key] = cls.profile_keys[key](value)
            except (ValueError, TypeError, AiravataError) as e:
                raise err(body, key, f"{rkey}: {e}") from None
        for key in cls.required_keys:
            if key not in settings:
                raise ProfileError(filename, body.line, f"{rkey}.{key}", f"a {kind} resource needs {key}:")
        line = body.line
        profile.resources[name] = Resource(name=name, kind=kind, settings=settings, source=f"{filename}:{line}")

    presets = doc.get("runtimes") or LineDict()
    if not isinstance(presets, dict):
        raise err(doc, "runtimes", "must be a mapping of preset names to settings")
    for name, body in presets.items():
        pkey = f"runtimes.{name}"
        try:
            checks.runtime_name(str(name))
        except AiravataError as e:
            raise err(presets, name, str(e)) from None
        if name == LOCAL:
            raise err(presets, name, "'local' is the notebook's own kernel; choose another preset name")
        if not isinstance(body, LineDict):
            raise err(presets, name, "must be a mapping, e.g. {resource: hpc, cpus: 4}")
        resource, use, values = None, [], {}
        for key, value in body.items():
            if key == "resource":
                if value not in profile.resources:
                    raise err(body, key, f"{pkey}: unknown resource {value!r}; defined: {', '.join(sorted(profile.resources))}")
                resource = value
            elif key == "use":
                try:
                    use = parse_use(value if isinstance(value, str) else ",".join(checks.text_list(value)), profile)
                except (ValueError, AiravataError) as e:
                    raise err(body, key, f"{pkey}: {e}") from None
            elif key in SPEC_FIELDS:
                values[key] = value
            else:
                raise err(body, key, f"unknown key in {pkey}; known: resource, use, {', '.join(SPEC_FIELDS)}")
        try:
            spec = RuntimeSpec.from_values(values)
        except AiravataError as e:
            bad = next((k for k in values if k in str(e)), None)
            raise err(body, bad, f"{pkey}: {e}") from None
        if resource is None and not use:
            raise ProfileError(filename, body.line, pkey, "needs resource: (or use:)")
        profile.presets[name] = Preset(name=name, resource=resource, use=[u for u in use], spec=spec)

    storage = doc.get("storage") or LineDict()
    if not isinstance(storage, dict):
        raise err(doc, "storage", "must be a mapping of names to {location: ...}")
    for name, body in storage.items():
        if not isinstance(body, LineDict) or set(body) != {"location"}:
            raise err(storage, name, f"storage.{name} must be exactly {{location: PATH_OR_URL}}")
        try:
            profile.storage[str(name)] = {"location": checks.text(body["location"])}
        except AiravataError as e:
            raise err(body, "location", f"storage.{name}: {e}") from None

    # -- datasets: {registry: STORAGE:PATH}, the shared registry of public datasets ------------
    datasets = doc.get("datasets") or LineDict()
    if not isinstance(datasets, LineDict) or set(datasets) - {"registry"}:
        raise err(doc, "datasets", "must be {registry: STORAGE:PATH}")
    if "registry" in datasets:
        reg = datasets["registry"]
        if not isinstance(reg, str) or ":" not in reg or reg.split(":", 1)[0] not in profile.storage:
            raise err(datasets, "registry", "datasets.registry must be STORAGE:PATH with STORAGE named under storage:")
        profile.datasets["registry"] = reg

    # -- applications: executables registered for everyone who uses this profile (issue 12) ----
    applications = doc.get("applications") or LineDict()
    if not isinstance(applications, dict):
        raise err(doc, "applications", "must be a mapping of names to {resource: R, command: PATH}")
    for name, body in applications.items():
        akey = f"applications.{name}"
        try:
            checks.key_name(name, "application name")
        except AiravataError as e:
            raise err(applications, name, str(e)) from None
        if not isinstance(body, LineDict) or not {"resource", "command"} <= set(body) \
                or not set(body) <= {"resource", "command", "description"}:
            raise err(applications, name, f"{akey} must be {{resource: R, command: PATH[, description: TEXT]}}")
        if body["resource"] not in profile.resources:
            raise err(body, "resource", f"{akey}: unknown resource {body['resource']!r}")
        try:
            profile.applications[name] = {k: checks.text(v, k) for k, v in body.items()}
        except AiravataError as e:
            raise err(body, "command", f"{akey}: {e}") from None
    return profile


def parse_use(value: str, profile: Profile) -> list[str]:
    """``A:gpu,B:debug`` -> ["A:gpu", "B:debug"], each resource checked against the profile."""
    out = []
    for item in str(value).split(","):
        item = item.strip()
        if not item:
            raise AiravataError(f"empty entry in --use {value!r}; write RESOURCE[:PARTITION][,...]")
        res, _, part = item.partition(":")
        if res not in profile.resources:
            raise AiravataError(f"--use names unknown resource {res!r}; defined: {', '.join(sorted(profile.resources))}")
        if ":" in item and not part:
            raise AiravataError(f"--use entry {item!r} has an empty partition")
        out.append(item)
    return out
