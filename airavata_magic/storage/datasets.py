"""Datasets: named data (a storage path or a web link), loaded read-only where the work runs.

- The registry: with ``datasets: {registry: STORAGE:PATH}`` in the profile, one JSON file per
  dataset in that shared place, mode 0644 for ``--public`` and 0600 for ``--private``: the file
  system's permissions decide who sees what, not this client. Without it, every dataset is
  private to this user, under ``$AIRAVATA_MAGIC_HOME/datasets``.
- ``load(name, runtime)`` makes a cache entry on the runtime's resource, keyed by content (the URL
  and its sha256, or the storage path with its size and mtime), read-only, and sets a variable in
  the runtime's kernel to its path. A second load finds the entry and moves nothing. URLs are
  downloaded by the resource itself (``fetch.py``, run there by its own Python; in a Kubernetes
  pod, by its kernel).
"""
from __future__ import annotations

import getpass
import hashlib
import importlib.resources
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .. import paths
from ..errors import AiravataError, InvalidArgument
from .ends import End, resolve
from .locations import check_name

if TYPE_CHECKING:
    import pandas as pd

_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass
class Dataset:
    """One registered dataset."""

    name: str
    location: str  # STORAGE:PATH or an http(s) URL
    public: bool = False
    sha256: str | None = None
    after_download: str | None = None
    description: str = ""
    owner: str = field(default_factory=getpass.getuser)
    created: float = field(default_factory=time.time)

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))


# -- the registry ----------------------------------------------------------------------------
def _registry(file: str | None) -> End | None:
    """The shared registry's End, or None when the profile names none."""
    from ..profile import load_profile

    spec = load_profile(file).datasets.get("registry")
    return resolve(spec, file=file) if spec else None


def _private_dir() -> str:
    return str(paths.private_dir(paths.home() / "datasets"))


def _write(reg: End | None, name: str, data: str, public: bool) -> None:
    mode = 0o644 if public else 0o600
    if reg is None:
        paths.write_private(paths.home() / "datasets" / f"{name}.json", data)
    elif reg.kind == "local":
        os.makedirs(reg.path, exist_ok=True)
        target = os.path.join(reg.path, f"{name}.json")
        tmp = os.path.join(reg.path, f".{name}.json.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.chmod(tmp, mode)
        try:
            os.replace(tmp, target)
        except OSError:
            os.unlink(tmp)
            raise
    elif reg.kind == "ssh":
        from ..transport.ssh import connection_for

        reg.check(f"mkdir -p -- {shlex.quote(reg.path)}", "mkdir")
        connection_for(reg.loc.target()).write_file(f"{reg.path}/{name}.json", data, mode)  # type: ignore[union-attr]
    else:
        raise InvalidArgument("the datasets registry must be a local or SSH location (file permissions enforce "
                              "private versus public, which object stores do not have)")


def _entries(reg: End | None) -> list[Dataset]:
    out: list[Dataset] = []
    texts: list[str] = []
    if reg is None or reg.kind == "local":
        d = _private_dir() if reg is None else reg.path
        for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if n.endswith(".json") and not n.startswith("."):
                try:
                    with open(os.path.join(d, n), encoding="utf-8") as f:
                        texts.append(f.read())
                except PermissionError:
                    continue  # another user's private dataset: not ours to see
    else:
        # One command reads every file this user may read; unreadable ones are skipped by cat.
        rc, out_text, _ = reg.run(f"cd -- {shlex.quote(reg.path)} 2>/dev/null && for f in *.json; do "
                                  "[ -r \"$f\" ] && cat -- \"$f\" && printf '\\0'; done; true")
        texts = [t for t in out_text.split("\0") if t.strip()]
    for t in texts:
        try:
            out.append(Dataset(**json.loads(t)))
        except (ValueError, TypeError):
            continue
    return out


def register(name: str, location: str, *, after_download: str | None = None, sha256: str | None = None,
             public: bool = False, description: str = "", file: str | None = None) -> Dataset:
    """Register a dataset (``location`` = ``STORAGE:PATH`` or an http(s) URL)."""
    check_name(name)
    if not isinstance(location, str) or not location or "\n" in location:
        raise InvalidArgument("--location must be STORAGE:PATH or an http(s) URL")
    if sha256 is not None and not _SHA_RE.match(sha256):
        raise InvalidArgument(f"--sha256 must be 64 hex digits, got {sha256!r}")
    if after_download is not None and ("\x00" in after_download or not after_download.strip()):
        raise InvalidArgument("--after-download must be a shell command")
    ds = Dataset(name, location, public, sha256.lower() if sha256 else None, after_download, description or "")
    if not ds.is_url:
        if "://" in location:
            raise InvalidArgument(f"--location {location!r}: only http(s) URLs are downloaded; name storage as STORAGE:PATH")
        store, sep, _ = location.partition(":")
        if not sep:
            raise InvalidArgument(f"--location {location!r}: write STORAGE:PATH or an http(s) URL")
        from .locations import get

        get(store, file)
    reg = _registry(file)
    if public and reg is None:
        raise InvalidArgument("public datasets need a shared registry: add `datasets: {registry: STORAGE:PATH}` "
                              "to the profile")
    try:
        _write(reg, name, json.dumps(asdict(ds)), public)
    except PermissionError:
        raise InvalidArgument(f"dataset {name!r} belongs to another user; choose another name") from None
    return ds


def get(name: str, file: str | None = None) -> Dataset:
    """One dataset this user may see."""
    check_name(name)
    for ds in _entries(_registry(file)):
        if ds.name == name:
            return ds
    raise InvalidArgument(f"no dataset named {name!r} (see %dataset list)")


def list_datasets(file: str | None = None) -> "pd.DataFrame":
    """Datasets this user may see: name, location, public, owner, sha256, description."""
    import pandas as pd

    rows = [{"name": d.name, "location": d.location, "public": d.public, "owner": d.owner,
             "sha256": d.sha256 or "", "description": d.description} for d in _entries(_registry(file))]
    return pd.DataFrame(rows, columns=["name", "location", "public", "owner", "sha256", "description"])


def show(name: str, file: str | None = None) -> dict[str, Any]:
    """Every field of one dataset."""
    return asdict(get(name, file))


def remove(name: str, file: str | None = None) -> None:
    """Remove a dataset from the registry (only its owner can: the directory's permissions say so)."""
    get(name, file)
    reg = _registry(file)
    try:
        if reg is None:
            os.unlink(os.path.join(_private_dir(), f"{name}.json"))
        elif reg.kind == "local":
            os.unlink(os.path.join(reg.path, f"{name}.json"))
        else:
            reg.check(f"rm -f -- {shlex.quote(reg.path + '/' + name + '.json')}", "rm")
    except PermissionError:
        raise InvalidArgument(f"dataset {name!r} is not yours to remove") from None


# -- loading ---------------------------------------------------------------------------------
def _fetch_source() -> str:
    pkg = importlib.resources.files("airavata_magic.storage")
    return (pkg / "archive.py").read_text() + "\n" + (pkg / "fetch.py").read_text()


def _identifier(name: str) -> str:
    v = re.sub(r"\W", "_", name)
    return v if v.isidentifier() else f"ds_{v}"


class _Side:
    """Where a runtime's datasets are cached: this machine (local runtimes) or its SSH host."""

    def __init__(self, end: End | None, python: str, cache: str) -> None:
        self.end, self.python, self.cache = end, python, cache

    def exists(self, path: str) -> bool:
        if self.end is None:
            return os.path.isfile(path)
        return self.end.run(f"test -f {shlex.quote(path)}")[0] == 0

    def mktemp(self, key: str) -> str:
        if self.end is None:
            import tempfile

            os.makedirs(self.cache, mode=0o700, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{key}.", dir=self.cache)
            os.makedirs(os.path.join(tmp, "data"))
            return tmp
        q = shlex.quote(self.cache)
        out = self.end.check(f"umask 077 && mkdir -p -- {q} && t=$(mktemp -d {q}/.{key}.XXXXXX) && mkdir -- \"$t/data\" && "
                             "echo \"$t\"", "mktemp")
        return out.strip().splitlines()[-1]

    def remove(self, path: str) -> None:
        if self.end is None:
            subprocess.run(["sh", "-c", 'chmod -R u+w -- "$1"; rm -rf -- "$1"', "sh", path], capture_output=True)
        else:
            q = shlex.quote(path)
            self.end.run(f"chmod -R u+w -- {q}; rm -rf -- {q}")

    def fetch(self, args: dict[str, Any]) -> str:
        source, arg = _fetch_source(), json.dumps(args)
        if self.end is None:
            p = subprocess.run([sys.executable, "-", arg], input=source, capture_output=True, text=True, timeout=3600)
            rc, out, err = p.returncode, p.stdout, p.stderr
        else:
            rc, out, err = _run_with_stdin(self.end, f"{shlex.quote(self.python)} - {shlex.quote(arg)}", source)
        if rc != 0:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            msg = lines[-1].removeprefix("error: ") if lines else f"exit status {rc}"
            raise AiravataError(f"preparing dataset {args.get('name')!r} failed: {msg}")
        return out.strip().splitlines()[-1]


class _PodSide(_Side):
    """A Kubernetes runtime: the cache lives in the pod, reached through its kernel (``kernelfiles``);
    ``fetch.py`` runs there in a private namespace of the kernel."""

    def __init__(self, manager: Any, runtime: str) -> None:
        from . import kernelfiles

        self.manager, self.runtime, self.kf = manager, runtime, kernelfiles
        home = kernelfiles.call(manager, runtime, "import os\nresult = os.path.expanduser('~')")
        super().__init__(None, "", f"{home}/.airavata-magic/datasets")

    def exists(self, path: str) -> bool:
        return self.kf.info(self.manager, self.runtime, path) is not None

    def mktemp(self, key: str) -> str:
        return self.kf.call(self.manager, self.runtime,
                            "import os, tempfile\nos.makedirs(args['cache'], mode=0o700, exist_ok=True)\n"
                            "result = tempfile.mkdtemp(prefix='.' + args['key'] + '.', dir=args['cache'])\n"
                            "os.makedirs(os.path.join(result, 'data'))", cache=self.cache, key=key)

    def remove(self, path: str) -> None:
        self.kf.call(self.manager, self.runtime, _fetch_source() + "\n_remove(args['path'])\nresult = True", path=path)

    def fetch(self, args: dict[str, Any]) -> str:
        try:
            return self.kf.call(self.manager, self.runtime, _fetch_source() + "\nresult = run(args['a'])", a=args)
        except AiravataError as e:
            raise AiravataError(f"preparing dataset {args.get('name')!r} failed: {str(e).split(': ', 1)[-1]}") from None

    def end_for(self, path: str, label: str) -> End:
        return End("kernel", path, label, runtime=self.runtime, manager=self.manager)


def _run_with_stdin(end: End, command: str, stdin: str) -> tuple[int, str, str]:
    from ..transport.ssh import connection_for

    return connection_for(end.loc.target()).run(command, stdin=stdin, timeout=3600)  # type: ignore[union-attr]


def _side_of(runtime: str, manager: Any) -> _Side:
    from .. import profile as profiles
    from .ends import resource_end

    rt = manager.get(runtime)
    if rt.profile is None or rt.kind == "local":
        return _Side(None, sys.executable, str(paths.home() / "dataset-cache"))
    res = profiles.load_profile(rt.profile).resource(rt.resource)
    if res.kind not in ("slurm", "ssh"):
        return _PodSide(manager, runtime)
    work = res.settings.get("work_dir", "~/.airavata-magic")
    end = resource_end(rt.profile, res.name, work, f"{runtime}:{work}")
    return _Side(end, res.settings.get("python") or "python3", f"{end.path}/datasets")


def load(name: str, runtime: Any, as_var: str | None = None, *, file: str | None = None, manager: Any = None,
         progress: Any = None) -> str:
    """Place dataset ``name`` read-only in the cache on ``runtime``'s resource and set ``as_var``
    (default: the name as an identifier) in the runtime's kernel to its path. Returns the path.

    The cache is keyed by content: a second load of unchanged data moves nothing."""
    from .variables import runtime_name

    runtime = runtime_name(runtime)
    ds = get(name, file)
    var = as_var or _identifier(name)
    if not var.isidentifier():
        raise InvalidArgument(f"--as must be a Python name, got {var!r}")
    if manager is None:
        from .. import get_manager

        manager = get_manager()
    side = _side_of(runtime, manager)
    if ds.is_url:
        ident = f"url|{ds.location}|{ds.sha256 or ''}|{ds.after_download or ''}"
        src = None
    else:
        src = resolve(ds.location, file=file, manager=manager)
        fprint = src.fingerprint()
        if fprint is None:
            raise AiravataError(f"dataset {name!r}: {ds.location} does not exist")
        ident = f"storage|{src.label}|{src.path}|{fprint}|{ds.after_download or ''}"
    key = f"{_identifier(name)}-{hashlib.sha256(ident.encode()).hexdigest()[:20]}"
    entry = f"{side.cache}/{key}"
    path = f"{entry}/data"
    if not side.exists(f"{entry}/dataset.json"):
        args: dict[str, Any] = {"cache": side.cache, "key": key, "name": name, "after": ds.after_download}
        if src is None:
            args.update(url=ds.location, sha256=ds.sha256)
        else:
            from .copying import copy_ends

            tmp = side.mktemp(key)
            try:
                label = f"{runtime} (dataset cache)"
                dst = side.end_for(f"{tmp}/data", label) if isinstance(side, _PodSide) else \
                    End("local", f"{tmp}/data", label) if side.end is None else \
                    End("ssh", f"{tmp}/data", label, side.end.fs, side.end.loc)
                copy_ends(src, dst, recursive=True, progress=progress)
            except BaseException:
                side.remove(tmp)
                raise
            args.update(tmp=tmp, source=ds.location)
        path = side.fetch(args)
    from .variables import QuietSink

    (outcome,) = manager.run([runtime], f"{var} = {path!r}", QuietSink(), allow_stdin=False, silent=True)
    if outcome.status != "ok":
        raise AiravataError(f"runtime {runtime!r} could not set {var}: {(outcome.error or {}).get('evalue', '')}")
    return path


__all__ = ["Dataset", "register", "get", "list_datasets", "show", "remove", "load"]
