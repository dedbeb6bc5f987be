"""Training tasks on a Kubernetes resource with a PersistentVolumeClaim (``storage_claim``).

Without a claim a task travels in its Job's Secret (at most 900 KiB) and its weights come back
through the pod log. With one, the staged task folder is copied into the claim, at
``.airavata-magic/tasks/<task id>``, through a pod that mounts it (``storage.claims``); data
given as ``RESOURCE:/path.npz`` (a path in the claim) is linked there, not copied; the Job's pod
mounts the claim and trains in that folder, so data and weights have no size limit. Status and
metrics still reach the notebook live through the pod log; the weights stay in the claim and are
fetched from there once the task has ended (``fetch_weights``). ``claim.json`` in the task's local
folder says where its folder in the claim is.
"""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import AiravataError, InvalidArgument

NOTE = "claim.json"

_LINK = """
import os
target, link = args["target"], args["link"]
if not os.path.isfile(target):
    raise FileNotFoundError(f"{args['shown']} is not a file in the claim")
os.makedirs(os.path.dirname(link), exist_ok=True)
os.symlink(target, link)
result = True
"""


def _location(resource: str, profile: str | None) -> Any:
    from ..profile import load_profile
    from ..storage import locations

    return locations.parse("task files", f"{resource}:/", "profile", load_profile(profile))


def stage(resource: str, profile: str | None, task_id: str, staged: Path, links: dict[str, str]) -> str:
    """Copy the staged task folder into the claim and link ``links`` (task-relative name ->
    path in the claim) there; returns the folder as the Job's pod sees it."""
    from ..storage import kernelfiles
    from ..storage.claims import claim_end
    from ..storage.copying import copy_ends
    from ..storage.ends import End

    loc = _location(resource, profile)
    rel = f".airavata-magic/tasks/{task_id}"
    end = claim_end(loc, rel, f"{resource}:/{rel}", None)
    copy_ends(End("local", str(staged), f"task {task_id}"), end, recursive=True, progress=False)
    for name, target in links.items():
        inside = posixpath.normpath("/" + target.lstrip("/"))
        try:
            kernelfiles.call(end.manager, end.runtime or "", _LINK, link=posixpath.join(end.path, name),
                             target=posixpath.join(loc.mount or "", inside.lstrip("/")), shown=f"{resource}:{inside}")
        except AiravataError as e:
            raise InvalidArgument(str(e).split(": ", 2)[-1]) from None
    paths.write_json(staged / NOTE, {"resource": resource, "profile": profile, "work": end.path, "relative": rel})
    return end.path


def fetch_weights(folder: Path) -> None:
    """Bring a finished task's weights from its folder in the claim into its local folder (0600)."""
    from ..storage import kernelfiles
    from ..storage.claims import claim_end

    note = json.loads((folder / NOTE).read_text())
    try:
        weights = json.loads((folder / "status.json").read_text()).get("weights")
    except (OSError, ValueError):
        weights = None
    if not weights or "/" in weights:
        return  # a task that failed before it saved any
    loc = _location(note["resource"], note["profile"])
    end = claim_end(loc, f"{note['relative']}/{weights}", f"{note['resource']}:/{note['relative']}/{weights}", None)
    data = kernelfiles.read_bytes(end.manager, end.runtime or "", end.path)
    if data is not None:
        paths.write_private(folder / weights, data, fsync=False)
