"""Who may read a hub entry, said in the file system's own terms (modes, groups, ACLs).

An entry's visibility becomes the permissions of its folder and files, so what a user can see is
decided by the kernel of the machine holding the hub, not by this client:

- ``public``: 0755 folders, 0644 files;
- ``shared`` with a Unix ``group``: 0750/0640 owned by that group, in ``.shared-g-<group>``;
- ``shared`` with users (``shared_with``): 0700/0600 plus one POSIX ACL entry per user (``setfacl``,
  Debian's ``acl`` package), in ``.shared-u-<hash of the names>``;
- ``private``: 0700/0600 in ``.private``.
"""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgument


@dataclass(frozen=True)
class Access:
    """The permissions one visibility gives: modes, an owning group, users granted by ACL."""

    bucket: str  # the folder under the owner's folder ("" for public)
    dir_mode: int
    file_mode: int
    gid: int | None = None
    users: tuple[str, ...] = field(default_factory=tuple)


def is_local(fs: Any) -> bool:
    return type(fs).__name__ == "LocalFileSystem"


def access_for(meta: dict[str, Any], fs: Any) -> Access:
    """The ``Access`` of validated metadata on filesystem ``fs`` (one-line errors otherwise)."""
    vis = meta["visibility"]
    if vis == "public":
        return Access("", 0o755, 0o644)
    if vis == "private":
        return Access(".private", 0o700, 0o600)
    if not is_local(fs):
        raise InvalidArgument("shared entries (group or users) need a hub on a local or mounted file system; "
                              "publish it public or private")
    if meta.get("group"):
        try:
            gid = grp.getgrnam(meta["group"]).gr_gid
        except KeyError:
            raise InvalidArgument(f"no Unix group {meta['group']!r} on this machine (getent group)") from None
        return Access(f".shared-g-{meta['group']}", 0o750, 0o640, gid=gid)
    users = tuple(sorted(set(meta["shared_with"])))
    for user in users:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise InvalidArgument(f"no Unix user {user!r} on this machine to share with") from None
    if shutil.which("setfacl") is None:
        raise InvalidArgument("sharing with users needs setfacl (apt-get install acl); or share with a Unix group "
                              "(--group GROUP)")
    key = hashlib.sha256(",".join(users).encode()).hexdigest()[:10]
    return Access(f".shared-u-{key}", 0o700, 0o600, users=users)


def apply(fs: Any, path: str, access: Access, is_dir: bool) -> None:
    """Give ``path`` the permissions of ``access`` (mode first: chmod resets an ACL's mask)."""
    apply_mode(fs, path, access.dir_mode if is_dir else access.file_mode, access.gid)
    if access.users:
        perm = "rx" if is_dir else "r"
        spec = ",".join(f"u:{u}:{perm}" for u in access.users)
        r = subprocess.run(["setfacl", "-m", spec, "--", path], capture_output=True, text=True)
        if r.returncode != 0:
            raise InvalidArgument(f"setfacl refused on {path}: {r.stderr.strip()[-200:]} "
                                  "(does this file system support ACLs?)")


def apply_mode(fs: Any, path: str, mode: int, gid: int | None = None) -> None:
    """chmod (and chgrp) through whichever file system holds the hub."""
    if is_local(fs):
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, mode)
    elif hasattr(fs, "ftp"):  # fsspec's SFTP filesystem
        fs.ftp.chmod(path, mode)
    elif hasattr(fs, "chmod"):
        fs.chmod(path, mode)
    elif type(fs).__module__.startswith("sshfs"):
        sftp_call(fs, "chmod", path, mode)
    else:
        raise InvalidArgument(f"the hub's storage ({type(fs).__name__}) cannot set file permissions, "
                              "which is how the hub keeps entries private; use a POSIX location")


def sftp_call(fs: Any, method: str, *args: Any) -> Any:
    """One SFTP request through an ``sshfs`` filesystem (the storage module's SFTP), which has no
    chmod of its own: its asyncssh SFTP client pool, on its event loop."""
    from fsspec.asyn import sync

    async def call() -> Any:
        async with fs._pool.get() as channel:
            return await getattr(channel, method)(*args)

    return sync(fs.loop, call)
