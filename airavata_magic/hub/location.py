"""Where the hub lives: the profile's ``hub: {storage: NAME}`` resolved to a file system and a root.

This is the hub's one door to storage. When the storage module (``airavata_magic.storage``) is
installed, its resolver is used, so the hub reaches every kind of location it knows; until then a
local path (fsspec's ``LocalFileSystem``) and ``sftp://`` over the project's own verified SSH
connection are understood here.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidArgument

DEFAULT_STORAGE_ENV = "AIRAVATA_MAGIC_HUB"  # a path used when the profile names no hub


def hub_storage_name(profile: Any) -> str | None:
    """The storage name the profile's ``hub:`` section names, or None."""
    hub = getattr(profile, "hub", None) or {}
    return hub.get("storage")


def resolve(profile: Any) -> tuple[Any, str]:
    """``(fsspec filesystem, root path)`` of the profile's hub.

    Order: the profile's ``hub: {storage: NAME}`` looked up in its ``storage:`` section; else
    ``$AIRAVATA_MAGIC_HUB`` (a local path). A one-line error says how to name one otherwise.
    """
    name = hub_storage_name(profile)
    if name is None:
        env = os.environ.get(DEFAULT_STORAGE_ENV)
        if env:
            return _local(env)
        raise InvalidArgument("no model hub configured: add `hub: {storage: NAME}` to cybershuttle.yml "
                              "(NAME from its storage: section) or set $AIRAVATA_MAGIC_HUB to a folder")
    if importlib.util.find_spec("airavata_magic.storage") is not None:
        # The storage module's one resolver (every kind of location it knows), when installed.
        from ..storage.locations import filesystem

        return filesystem(name, file=getattr(profile, "path", None))
    entry = (getattr(profile, "storage", None) or {}).get(name)
    if entry is None:
        where = getattr(profile, "path", None) or "no profile file"
        raise InvalidArgument(f"hub storage {name!r} is not in the profile's storage: section ({where})")
    return location_filesystem(entry["location"], profile)


def _local(path: str) -> tuple[Any, str]:
    from fsspec.implementations.local import LocalFileSystem

    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise InvalidArgument(f"hub location {root} does not exist or is not a folder; create it "
                              "(shared hubs: mode 1777 so every user can add their own folder)")
    return LocalFileSystem(), root


def location_filesystem(location: str, profile: Any = None) -> tuple[Any, str]:
    """A storage location (local path or ``sftp://user@host[:port]/path``) as (filesystem, root)."""
    if "://" not in location:
        return _local(location)
    url = urlsplit(location)
    if url.scheme == "file":
        return _local(url.path)
    if url.scheme == "sftp":
        return _sftp(url, profile)
    raise InvalidArgument(f"hub location {location!r}: use a local path or sftp://user@host/path")


def _sftp(url: Any, profile: Any) -> tuple[Any, str]:
    """An fsspec SFTP filesystem over the pooled, host-key-checked connection of the profile
    resource on that host (never fsspec's own paramiko client, which accepts unknown hosts)."""
    from fsspec.implementations.sftp import SFTPFileSystem

    from ..backends.ssh_launched import target_of
    from ..transport.ssh import connection_for

    settings = None
    for res in (getattr(profile, "resources", None) or {}).values():
        s = res.settings
        if s.get("host") == url.hostname and int(s.get("port", 22)) == (url.port or 22) \
                and (url.username is None or s.get("user") == url.username):
            settings = s
            break
    if settings is None:
        raise InvalidArgument(f"sftp://{url.hostname}: no resource in the profile uses that host; the hub "
                              "reaches sftp storage through a resource's SSH settings (host keys, identity)")
    conn = connection_for(target_of(settings))

    class _Verified(SFTPFileSystem):
        def _connect(self) -> None:  # the project's connection instead of a new, unverified one
            self.client = None
            self.ftp = conn.sftp()

    fs = _Verified(url.hostname, skip_instance_cache=True)
    return fs, url.path or "/"
