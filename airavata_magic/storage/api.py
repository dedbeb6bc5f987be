"""The storage functions that magics, the CLI and scripts call: list, ls, register, remove, mount."""
from __future__ import annotations

import os
import posixpath
import shlex
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from . import locations
from .ends import End, resolve, runtime_cwd

if TYPE_CHECKING:
    import pandas as pd


def list_locations(file: str | None = None) -> "pd.DataFrame":
    """Every named location as a DataFrame: name, kind, location, writable, source."""
    import pandas as pd

    rows = [locations.as_row(loc) for loc in locations.all_locations(file)]
    return pd.DataFrame(rows, columns=["name", "kind", "location", "writable", "source"])


def register(name: str, location: str, file: str | None = None) -> locations.Location:
    """Add a named location to this user's list (kept under ``$AIRAVATA_MAGIC_HOME``)."""
    return locations.register(name, location, file)


def remove(name: str, file: str | None = None) -> None:
    """Remove a named location from this user's list."""
    locations.remove(name, file)


def ls(spec: str, file: str | None = None, *, manager: Any = None) -> "pd.DataFrame":
    """List ``NAME[:SUBPATH]`` as a DataFrame: name, type, size, modified (UTC)."""
    import pandas as pd

    if not isinstance(spec, str) or not spec:
        raise InvalidArgument("give NAME[:SUBPATH], e.g. scratch:runs")
    name, _, sub = spec.partition(":")
    locations.get(name, file)  # a clear error for an unknown name
    end = resolve(f"{name}:{sub}", file=file, manager=manager)
    rows = []
    if end.kind == "kernel":  # a Kubernetes claim, listed by a pod that mounts it
        from .claims import listdir

        for n, kind, size, mtime in listdir(end):
            rows.append((n, kind, size, datetime.fromtimestamp(mtime, timezone.utc)))
    elif end.kind == "local":
        if not os.path.isdir(end.path):
            raise InvalidArgument(f"{spec}: not a directory")
        for entry in sorted(os.scandir(end.path), key=lambda e: e.name):
            st = entry.stat(follow_symlinks=False)
            kind = "link" if entry.is_symlink() else "directory" if entry.is_dir() else "file"
            rows.append((entry.name, kind, st.st_size, datetime.fromtimestamp(st.st_mtime, timezone.utc)))
    else:
        try:
            entries = end.fs.ls(end.path, detail=True)
        except FileNotFoundError:
            raise InvalidArgument(f"{spec}: no such directory") from None
        for i in sorted(entries, key=lambda i: i["name"]):
            mtime = i.get("mtime") or i.get("LastModified") or i.get("updated")
            if isinstance(mtime, (int, float)):
                mtime = datetime.fromtimestamp(mtime, timezone.utc)
            rows.append((posixpath.basename(i["name"].rstrip("/")), i.get("type", "file"), i.get("size") or 0, mtime))
    return pd.DataFrame(rows, columns=["name", "type", "size", "modified"])


def _manager(manager: Any) -> Any:
    if manager is not None:
        return manager
    from .. import get_manager

    return get_manager()


def mount(name: str, runtime: str, as_path: str | None = None, *, file: str | None = None, manager: Any = None) -> str:
    """Make storage ``name`` visible in ``runtime``'s working directory as a link (default: NAME).

    Works when the runtime reaches the location directly (same host or cluster). Otherwise raises
    one line that says to copy instead. Returns the link's path as the runtime sees it."""
    loc = locations.get(name, file)
    m = _manager(manager)
    rt = m.get(runtime)
    as_path = as_path or name
    if "\x00" in as_path or "\n" in as_path or not as_path.strip():
        raise InvalidArgument(f"--as must be a path, got {as_path!r}")
    same = False
    if loc.kind == "claim":
        return _mount_claim(loc, m, runtime, as_path)
    if rt.profile is None or rt.kind == "local":
        same = loc.kind == "local"
    elif loc.kind in ("sftp", "resource") and loc.ssh:
        from .. import profile as profiles

        res = profiles.load_profile(rt.profile).resource(rt.resource)
        s = res.settings
        same = (s.get("host"), s.get("port", 22)) == (loc.ssh["host"], loc.ssh["port"])
    if not same:
        raise InvalidArgument(f"runtime {runtime!r} cannot reach storage {name!r} directly; copy instead: "
                              f"%copy_data {name}:PATH {runtime}:PATH")
    cwd = runtime_cwd(m, runtime)
    if loc.kind == "local":
        link = os.path.join(cwd, os.path.expanduser(as_path))
        if os.path.lexists(link) and not os.path.islink(link):
            raise InvalidArgument(f"{link} exists and is not a link; choose another --as")
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(loc.root, link)
        return link
    end = resolve(f"{name}:", file=file)
    link = as_path if as_path.startswith("/") else posixpath.join(cwd, as_path)
    q, t = shlex.quote(link), shlex.quote(end.path)
    end.check(f"if [ -e {q} ] && [ ! -L {q} ]; then echo 'the --as path exists and is not a link' >&2; "
              f"exit 1; fi; mkdir -p -- \"$(dirname -- {q})\" && ln -sfn -- {t} {q}", "mount")
    return link


_LINK = """
import os
link, target = args["link"], args["target"]
if os.path.lexists(link) and not os.path.islink(link):
    raise FileExistsError(f"{link} exists and is not a link; choose another --as")
os.makedirs(os.path.dirname(link) or ".", exist_ok=True)
if os.path.islink(link):
    os.unlink(link)
os.symlink(target, link)
result = link
"""


def _mount_claim(loc: locations.Location, manager: Any, runtime: str, as_path: str) -> str:
    """A link in the runtime's pod to the claim's path, when the pod mounts that claim."""
    from . import kernelfiles
    from .claims import pod_mounts

    rt = manager.get(runtime)
    if rt.resource != loc.resource or not pod_mounts(manager, runtime, loc.mount or ""):
        why = "is on another resource" if rt.resource != loc.resource else f"does not mount claim {loc.claim!r}"
        raise InvalidArgument(f"runtime {runtime!r} {why}; copy instead: %copy_data {loc.name}:PATH {runtime}:PATH")
    target = posixpath.join(loc.mount or "", loc.root.lstrip("/"))
    cwd = kernelfiles.cwd(manager, runtime)
    link = as_path if as_path.startswith("/") else posixpath.join(cwd, as_path)
    try:
        return kernelfiles.call(manager, runtime, _LINK, link=link, target=target)
    except Exception as e:  # noqa: BLE001 - the kernel's one line, e.g. the --as path is a file
        raise InvalidArgument(str(e).split(": ", 2)[-1]) from None


__all__ = ["list_locations", "register", "remove", "ls", "mount", "End"]
