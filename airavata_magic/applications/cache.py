"""The per-resource catalog cache: ``$AIRAVATA_MAGIC_HOME/cache/applications/<resource>.json``.

A cached answer is used while it is younger than ``max_age`` and came from the same login (kind,
host, port, user); ``refresh=True`` asks the resource again. An in-process copy, checked against
the file's modification time, makes a cached listing cost no JSON parse.
"""
from __future__ import annotations

import json
import os
import time
import urllib.parse
from pathlib import Path

from .. import paths
from ..profile import Resource
from ..errors import BackendError
from .catalog import Catalog, parse_output, query
from .shell import identity, run_script

DEFAULT_MAX_AGE_S = 3600.0

_memory: dict[str, tuple[float, str, Catalog]] = {}  # path -> (mtime, identity, catalog)


def _path(resource: str) -> Path:
    return paths.private_dir(paths.home() / "cache" / "applications") / f"{urllib.parse.quote(resource, safe='-_.')}.json"


def cached(resource: Resource, max_age: float = DEFAULT_MAX_AGE_S) -> Catalog | None:
    """The cached catalog of ``resource`` if fresh enough and from the same login, else None."""
    p = _path(resource.name)
    try:
        mtime = p.stat().st_mtime
    except FileNotFoundError:
        return None
    ident = identity(resource)
    hit = _memory.get(str(p))
    if hit is None or hit[0] != mtime:
        try:
            data = paths.read_json(p)
            hit = (mtime, str(data.get("identity")), Catalog.from_json(data["catalog"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: ask again
        _memory[str(p)] = hit
    if hit[1] != ident or time.time() - hit[2].fetched_at > max_age:
        return None
    return hit[2]


def fetch(resource: Resource, refresh: bool = False) -> Catalog:
    """Ask the resource now (one command) and store the answer; ``refresh`` also skips the
    resource's own spider cache (``catalog.LMOD_QUERY``)."""
    rc, out, err = run_script(resource, query(refresh))
    if "@@end" not in out:
        tail = " ".join((err or out).strip().splitlines()[-2:])
        raise BackendError(f"{resource.name}: listing modules and conda environments failed "
                           f"(exit {rc}{': ' + tail if tail else ''})")
    catalog = parse_output(out, resource.name, time.time())
    p = _path(resource.name)
    # A cache: atomic against a crashing process is enough (no fsync), and compact JSON.
    paths.write_private(p, json.dumps({"identity": identity(resource), "catalog": catalog.to_json()},
                                      separators=(",", ":")), fsync=False)
    _memory[str(p)] = (os.stat(p).st_mtime, identity(resource), catalog)
    return catalog


def catalog_of(resource: Resource, *, refresh: bool = False, max_age: float = DEFAULT_MAX_AGE_S) -> Catalog:
    """The catalog of ``resource``: cached when fresh, else asked."""
    if not refresh:
        hit = cached(resource, max_age)
        if hit is not None:
            return hit
    return fetch(resource, refresh=refresh)


def forget(resource: str) -> None:
    """Drop the cached catalog of a resource."""
    p = _path(resource)
    _memory.pop(str(p), None)
    p.unlink(missing_ok=True)
