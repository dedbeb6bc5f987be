"""Datasets: named data (a storage path or a web link), loaded read-only where the work runs.

- The registry: with ``datasets: {registry: STORAGE:PATH}`` in the profile, one JSON file per
  dataset in that shared place, mode 0644 for ``--public`` and 0600 for ``--private``: the file
  system's permissions decide who sees what, not this client. Without it, every dataset is
  private to this user, under ``$AIRAVATA_MAGIC_HOME/datasets``.
- ``load(name, runtime)`` makes a cache entry on the runtime's resource, keyed by content (the URL
  and its sha256, or the storage path with its size and mtime), read-only, and sets a variable in
  the runtime's kernel to its path. A second load finds the entry and moves nothing. URLs are
  downloaded by the resource itself (``fetch.py``, run there by its own Python; in a Kubernetes
  pod, by its kernel). ``prepare(name, runtime)`` makes the same entry without the variable: the
  hub's tasks and ``Hub.run`` take registered datasets by name through it.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shlex
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .. import paths
from ..errors import AiravataError, InvalidArgument
from . import catalog
from .cacheside import PodSide, local_side, side_of
from .ends import End, resolve
from .locations import check_name

if TYPE_CHECKING:
    import pandas as pd

_SHA_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,31}$")  # the hub's rule


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
    # The metadata hub entries carry too (AstroHub's); records written before it get defaults.
    title: str = ""
    domain: str = ""
    version: str = "1.0"
    uuid: str = ""
    publication_date: str = ""

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    def row(self) -> dict[str, Any]:
        """This dataset as a row of the shared catalog table (``catalog.COLUMNS``)."""
        return {"uuid": self.uuid, "name": self.name, "title": self.title or self.name, "owner": self.owner,
                "domain": self.domain, "description": self.description, "version": self.version,
                "publication_date": self.publication_date or catalog.date_of(self.created), "type": "dataset",
                "visibility": "public" if self.public else "private", "location": self.location}


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
        d = str(paths.home() / "datasets") if reg is None else reg.path
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
             public: bool = False, description: str = "", title: str = "", domain: str = "", version: str = "1.0",
             file: str | None = None) -> Dataset:
    """Register a dataset (``location`` = ``STORAGE:PATH`` or an http(s) URL) with the metadata hub
    entries carry (title, domain, version; uuid, owner and publication date are filled in)."""
    check_name(name)
    for key, value in (("title", title), ("domain", domain), ("description", description)):
        if not isinstance(value, str) or "\n" in value or "\x00" in value:
            raise InvalidArgument(f"--{key} must be one line of text")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise InvalidArgument(f"--version must look like 1.0 or 2.1.3, got {version!r}")
    if not isinstance(location, str) or not location or "\n" in location:
        raise InvalidArgument("--location must be STORAGE:PATH or an http(s) URL")
    if sha256 is not None and not _SHA_RE.match(sha256):
        raise InvalidArgument(f"--sha256 must be 64 hex digits, got {sha256!r}")
    if after_download is not None and ("\x00" in after_download or not after_download.strip()):
        raise InvalidArgument("--after-download must be a shell command")
    ds = Dataset(name, location, public, sha256.lower() if sha256 else None, after_download, description or "",
                 title=title or name, domain=domain, version=version, uuid=str(uuid.uuid4()))
    ds.publication_date = catalog.date_of(ds.created)
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
    ds = find(name, file)
    if ds is not None:
        return ds
    raise InvalidArgument(f"no dataset named {name!r} (see %dataset list)")


def list_datasets(file: str | None = None) -> "pd.DataFrame":
    """Datasets this user may see, as the table the hub's searches return too (``catalog.COLUMNS``:
    name, version, owner, domain, title, type, visibility, publication_date, uuid, description,
    location)."""
    return catalog.frame(sorted((d.row() for d in _entries(_registry(file))), key=lambda r: r["name"]))


def find(name: str, file: str | None = None) -> Dataset | None:
    """The registered dataset ``name`` this user may see, or None (no error: for callers that
    accept other kinds of references too, such as the hub's)."""
    if not isinstance(name, str):
        return None
    for ds in _entries(_registry(file)):
        if ds.name == name:
            return ds
    return None


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
def _identifier(name: str) -> str:
    v = re.sub(r"\W", "_", name)
    return v if v.isidentifier() else f"ds_{v}"


def load(name: str, runtime: Any, as_var: str | None = None, *, file: str | None = None, manager: Any = None,
         progress: Any = None) -> str:
    """Place dataset ``name`` read-only in the cache on ``runtime``'s resource and set ``as_var``
    (default: the name as an identifier) in the runtime's kernel to its path. Returns the path.

    The cache is keyed by content: a second load of unchanged data moves nothing."""
    from .variables import runtime_name

    runtime = runtime_name(runtime)
    var = as_var or _identifier(name)
    if not var.isidentifier():
        raise InvalidArgument(f"--as must be a Python name, got {var!r}")
    if manager is None:
        from .. import get_manager

        manager = get_manager()
    path = prepare(name, runtime, file=file, manager=manager, progress=progress)
    from .variables import QuietSink

    (outcome,) = manager.run([runtime], f"{var} = {path!r}", QuietSink(), allow_stdin=False, silent=True)
    if outcome.status != "ok":
        raise AiravataError(f"runtime {runtime!r} could not set {var}: {(outcome.error or {}).get('evalue', '')}")
    return path


def prepare(name: str, runtime: Any = None, *, file: str | None = None, manager: Any = None,
            progress: Any = None, inside: bool = False) -> str:
    """The cache entry of dataset ``name`` where ``runtime`` runs (None: this machine), made when
    missing; returns the path of its read-only data directory there. ``load`` without the variable:
    for features that hand the data to their own jobs (the hub's training tasks and inference).
    ``inside``: for a dataset that is a storage directory, the path of that directory's copy (the
    data directory holds it under its own name) rather than the data directory."""
    ds = get(name, file)
    if runtime is None:
        side = local_side()
    else:
        from .variables import runtime_name

        runtime = runtime_name(runtime)
        if manager is None:
            from .. import get_manager

            manager = get_manager()
        side = side_of(runtime, manager)
    if ds.is_url:
        ident = f"url|{ds.location}|{ds.sha256 or ''}|{ds.after_download or ''}"
        src = None
    else:
        src = resolve(ds.location, file=file, manager=manager, prefer=runtime)  # a claim: in the runtime's pod
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
                label = f"{runtime or 'local'} (dataset cache)"
                dst = side.end_for(f"{tmp}/data", label) if isinstance(side, PodSide) else \
                    End("local", f"{tmp}/data", label) if side.end is None else \
                    End("ssh", f"{tmp}/data", label, side.end.fs, side.end.loc)
                copy_ends(src, dst, recursive=True, progress=progress)
            except BaseException:
                side.remove(tmp)
                raise
            args.update(tmp=tmp, source=ds.location)
        path = side.fetch(args)
    if inside and src is not None and (src.info() or {}).get("type") == "directory":
        return f"{path}/{os.path.basename(src.path.rstrip('/')) or 'root'}"
    return path


__all__ = ["Dataset", "register", "get", "find", "list_datasets", "show", "remove", "load", "prepare"]
