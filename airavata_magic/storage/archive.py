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
from typing import IO, Callable, Optional


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


def link_escapes(rel: str, target: str) -> bool:
    """Whether a link at ``rel`` (relative to a tree's root) pointing to ``target`` leaves the tree
    (absolute targets always do: on another machine they name something else)."""
    if target.startswith("/"):
        return True
    dest = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    return dest == ".." or dest.startswith("../")


def scan_tree(root: str) -> tuple[list[tuple[str, str, str, int]], list[str]]:
    """A local tree as ``(entries, skipped)``: entries are (absolute path, relative path, kind,
    size) with kind ``dir``, ``file`` or ``link`` (links kept as links, never followed); links that
    point out of the tree are left out and listed in ``skipped`` by relative path."""
    entries: list[tuple[str, str, str, int]] = []
    skipped: list[str] = []
    stack = [(root, "")]
    while stack:
        path, rel = stack.pop()
        with os.scandir(path) as it:
            for e in sorted(it, key=lambda e: e.name):
                r = f"{rel}/{e.name}" if rel else e.name
                if e.is_symlink():
                    if link_escapes(r, os.readlink(e.path)):
                        skipped.append(r)
                    else:
                        entries.append((e.path, r, "link", 0))
                elif e.is_dir(follow_symlinks=False):
                    entries.append((e.path, r, "dir", 0))
                    stack.append((e.path, r))
                elif e.is_file(follow_symlinks=False):
                    entries.append((e.path, r, "file", e.stat(follow_symlinks=False).st_size))
    return entries, skipped
