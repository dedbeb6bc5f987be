"""Storage in a Kubernetes PersistentVolumeClaim: ``RESOURCE:/path`` on a ``kind: kubernetes``
resource whose profile names ``storage_claim``.

A claim has no SSH host in front of it. Every runtime pod of that resource mounts the claim at
``storage_mount`` (default ``/storage``), so its files are reached through the kernel of such a
pod (``kernelfiles``), like any other file of a pod. A listing or copy uses a runtime of that
resource that is already up and sees the claim; otherwise it starts one small runtime,
``<resource>-storage`` (one line says so), which ends after ``STORAGE_WALLTIME_MIN`` or with
``%stop_runtime``. A copy between the claim and a runtime that mounts it runs inside that pod:
no byte crosses this machine.
"""
from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from ..errors import AiravataError, InvalidArgument

if TYPE_CHECKING:
    from ..profile import Profile
    from .ends import End
    from .locations import Location

STORAGE_WALLTIME_MIN = 60
STORAGE_MEMORY_MB = 512
START_TIMEOUT_S = 300.0


def claim_of(profile: "Profile", resource: str) -> tuple[str, str]:
    """``(claim name, mount path in pods)`` of a kubernetes resource; one line when it names none."""
    from ..backends.kubernetes.settings import storage_claim_of

    found = storage_claim_of(profile.resources[resource].settings)
    if found is None:
        raise InvalidArgument(f"{resource} is a Kubernetes resource without storage_claim: name a "
                              f"PersistentVolumeClaim of its namespace (storage_claim: NAME) in the profile "
                              f"to use {resource}:/path as storage")
    return found


def storage_runtime_name(resource: str) -> str:
    return f"{resource}-storage"[:63]


def pod_mounts(manager: Any, runtime: str, mount: str) -> bool:
    from . import kernelfiles

    try:
        found = kernelfiles.info(manager, runtime, mount)
    except AiravataError:
        return False
    return bool(found) and found["type"] == "directory"


def _ready_on(manager: Any, loc: "Location") -> list[str]:
    """Runtimes of this manager's records on the claim's resource (same profile) that are up."""
    from ..runtime.model import RuntimeState

    out = []
    for rt in manager.store.all():
        if rt.resource == loc.resource and rt.profile == loc.profile and rt.state == RuntimeState.READY:
            out.append(rt.name)
    return sorted(out, key=lambda n: (n != storage_runtime_name(loc.resource or ""), n))


def runtime_for(loc: "Location", manager: Any, prefer: str | None = None) -> str:
    """A runtime whose pod mounts ``loc``'s claim: ``prefer`` when it does, else one that is up,
    else the resource's storage runtime, started (and waited for) now."""
    mount = (loc.mount or "")
    for name in ([prefer] if prefer else []) + _ready_on(manager, loc):
        if pod_mounts(manager, name, mount):
            return name
    name = storage_runtime_name(loc.resource or "")
    if not (manager.store.exists(name) and not manager.get(name).state.terminal):
        manager.request(name, file=loc.profile, resource=loc.resource,
                        overrides={"memory": STORAGE_MEMORY_MB, "walltime": STORAGE_WALLTIME_MIN})
        manager.warn(f"started runtime {name!r} to reach claim {loc.claim!r} of {loc.resource} "
                      f"(it ends after {STORAGE_WALLTIME_MIN} min, or with %stop_runtime {name})")
    manager.wait(name, timeout=START_TIMEOUT_S)
    if not pod_mounts(manager, name, mount):
        raise AiravataError(f"runtime {name!r} does not see {mount}: it was started before storage_claim was set; "
                            f"%stop_runtime {name} and try again")
    return name


def claim_end(loc: "Location", sub: str, label: str, manager: Any, prefer: str | None = None) -> "End":
    """The End of ``loc``'s path ``sub`` as a kernel end on a runtime that mounts the claim."""
    from .ends import End, _inside

    if manager is None:
        from .. import get_manager

        manager = get_manager()
    root = posixpath.join((loc.mount or ""), loc.root.lstrip("/"))
    path = _inside(posixpath.normpath(root), sub, posixpath)
    runtime = runtime_for(loc, manager, prefer)
    return End("kernel", path, label, loc=loc, runtime=runtime, manager=manager)


# -- in the pod --------------------------------------------------------------------------------
_LIST = """
import os, stat
rows = []
for e in sorted(os.scandir(args["path"]), key=lambda e: e.name):
    s = e.stat(follow_symlinks=False)
    kind = "link" if stat.S_ISLNK(s.st_mode) else "directory" if stat.S_ISDIR(s.st_mode) else "file"
    rows.append((e.name, kind, s.st_size, s.st_mtime))
result = rows
"""

# A copy inside one pod: into a temporary name, links leaving the tree removed, then renamed.
_COPY = """
import os, shutil
src, tmp, dst = args["source"], args["tmp"], args["dest"]
skipped, files, size = [], 0, 0
if os.path.isdir(src):
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=True)
    top = os.path.realpath(tmp)
    for d, dirs, names in os.walk(tmp):
        for n in dirs + names:
            p = os.path.join(d, n)
            if os.path.islink(p):
                t = os.readlink(p)
                r = os.path.realpath(p)
                if os.path.isabs(t) or not (r == top or r.startswith(top + os.sep)):
                    os.unlink(p)
                    skipped.append(os.path.relpath(p, tmp))
            elif os.path.isfile(p):
                files += 1
                size += os.path.getsize(p)
    if os.path.isdir(dst) and not os.path.islink(dst):
        old = tmp + ".old"
        os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dst)
else:
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    files, size = 1, os.path.getsize(dst)
result = (files, size, sorted(skipped))
"""


_GLOB = """
import glob, os
result = sorted(p for p in glob.glob(args["pattern"]) if os.path.isfile(p))
"""


def glob_files(loc: "Location", pattern: str, manager: Any = None) -> list[str]:
    """Files of the claim matching ``pattern`` (a glob inside ``loc``), as pods see them (under
    the mount path), matched by a pod that mounts the claim."""
    end = claim_end(loc, pattern.lstrip("/"), f"{loc.resource}:{pattern}", manager)
    from . import kernelfiles

    return kernelfiles.call(end.manager, end.runtime or "", _GLOB, pattern=end.path)


def listdir(end: "End") -> list[tuple[str, str, int, float]]:
    """``(name, type, size, mtime)`` of a directory of a kernel end."""
    from . import kernelfiles

    try:
        return kernelfiles.call(end.manager, end.runtime or "", _LIST, path=end.path)
    except AiravataError as e:
        if "FileNotFoundError" in str(e) or "NotADirectoryError" in str(e):
            raise InvalidArgument(f"{end.label}: no such directory") from None
        raise


def copy_in_pod(s: "End", d: "End", tmp: str) -> tuple[int, int, list[str]]:
    """Copy between two paths of one pod, by its kernel: ``(files, bytes, links left out)``."""
    from . import kernelfiles

    files, size, skipped = kernelfiles.call(s.manager, s.runtime or "", _COPY, source=s.path, tmp=tmp, dest=d.path)
    return files, size, list(skipped)
