"""Tar streams that never write outside their target, and never follow links out of a tree.

This module is also sent, as source, to a resource that unpacks a dataset there (run by that
resource's own Python): it imports nothing but the standard library. GNU tar silently strips bad
members instead of refusing them, and Python 3.11.2 (Debian 12) has no extraction filter, so each
member is checked here; ``filter="data"`` is used as a second guard where it exists.
"""
from __future__ import annotations

import os
import posixpath
import tarfile
from typing import IO, Callable, Iterator, Optional


class UnsafeMember(ValueError):
    """An archive member that would land outside the target (absolute, ``..``, escaping link)."""


def refusal(member: tarfile.TarInfo) -> Optional[str]:
    """Why ``member`` may not be extracted, or None when it is safe."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        return f"path {name!r} leaves the target"
    if member.isdev() or member.isfifo():
        return f"device or fifo {name!r}"
    if member.issym():
        link = member.linkname
        if link.startswith("/"):
            return f"link {name!r} points to the absolute path {link!r}"
        dest = posixpath.normpath(posixpath.join(posixpath.dirname(norm), link))
        if dest == ".." or dest.startswith("../"):
            return f"link {name!r} points outside the target ({link!r})"
    if member.islnk():
        dest = posixpath.normpath(member.linkname)
        if member.linkname.startswith("/") or dest == ".." or dest.startswith("../"):
            return f"hard link {name!r} points outside the target ({member.linkname!r})"
    return None


def _through_link(target: str, name: str) -> bool:
    """True when a parent of ``name`` inside ``target`` is a symlink (writing would follow it)."""
    parts = posixpath.normpath(name).split("/")[:-1]
    p = target
    for part in parts:
        p = os.path.join(p, part)
        if os.path.islink(p):
            return True
    return False


def extract(fileobj: IO[bytes], target: str, *, refuse: bool, on_member: Callable[[tarfile.TarInfo], None] | None = None,
            stream: bool = True) -> list[str]:
    """Extract a tar stream into ``target``. Unsafe members raise ``UnsafeMember`` when ``refuse``,
    else are skipped and returned. Also refuses writing through a link made by an earlier member."""
    skipped: list[str] = []
    mode = "r|*" if stream else "r:*"
    with tarfile.open(fileobj=fileobj, mode=mode) as tar:
        for member in tar:
            why = refusal(member)
            if why is None and _through_link(target, member.name):
                why = f"{member.name!r} would be written through a link"
            if why is not None:
                if refuse:
                    raise UnsafeMember(f"refused archive member: {why}")
                skipped.append(why)
                continue
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, target, set_attrs=True, filter="data")
            else:
                tar.extract(member, target, set_attrs=True)
            if on_member is not None:
                on_member(member)
    return skipped


def walk_safe(root: str) -> Iterator[tuple[str, str, bool]]:
    """(absolute path, relative path, is_dir) of a local tree, links kept as links; a link that
    points out of the tree is yielded with rel prefixed by ``!`` so callers can skip and report it."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames) + sorted(filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                dest = os.path.realpath(p)
                inside = dest == real_root or dest.startswith(real_root + os.sep)
                yield p, rel if inside and not os.readlink(p).startswith("/") else "!" + rel, False
            else:
                yield p, rel, os.path.isdir(p)
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
