"""``copy(src, dst)``: fast, atomic, resumable, verifiable copies between local, storage and runtimes.

- Bytes land in a temporary name beside the destination and are renamed over it at the end, so a
  reader never sees half a file and an interrupted copy leaves the destination as it was.
- A rerun of an interrupted single-file copy resumes from the bytes already in the temporary file,
  after checking that their sha256 matches the same prefix of the source. The resume record lives
  under ``$AIRAVATA_MAGIC_HOME/copies``; a finished copy leaves nothing beside its destination.
- Directories (``trees.py``) travel as one tar stream over SSH, not one SFTP round trip per file;
  both sides on one host copy there with ``cp``. Links are copied as links, and links that point
  out of the source tree are skipped and reported, never followed.
- ``verify=True`` compares sha256 of both sides; SSH hosts compute theirs with ``sha256sum``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from .. import checks, paths
from ..errors import AiravataError, InvalidArgument
from . import sshio
from .ends import End, resolve_pair
from .progress import Progress, resolve as resolve_progress

CHUNK = 8 << 20


@dataclass
class CopyResult:
    """What one copy did."""

    src: str
    dst: str  # the destination path written
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    method: str = ""  # sftp | tar-stream | remote-cp | local | fsspec | kernel | kernel-tar | in-pod
    resumed_from: int = 0  # bytes already there from an interrupted run
    verified: bool | None = None  # None: not asked
    sha256: str | None = None  # of a single file, when verified
    skipped: list[str] = field(default_factory=list)  # links out of the tree, not followed

    def __str__(self) -> str:
        rate = self.bytes / self.seconds / 1e6 if self.seconds else 0
        extra = f", resumed at {self.resumed_from} bytes" if self.resumed_from else ""
        ver = {None: "", True: ", sha256 verified", False: ", VERIFY FAILED"}[self.verified]
        skip = f", {len(self.skipped)} links out of the tree skipped" if self.skipped else ""
        return (f"copied {self.files} file(s), {self.bytes / 1e6:.1f} MB to {self.dst} in {self.seconds:.1f} s "
                f"({rate:.0f} MB/s, {self.method}{extra}){ver}{skip}")


def copy(src: str, dst: str, *, recursive: bool = False, verify: bool = False, jobs: int = 4,
         progress: Progress | bool | None = None, file: str | None = None, manager: Any = None) -> CopyResult:
    """Copy ``src`` to ``dst``; each is ``local:PATH``, ``STORAGE:PATH`` or ``RUNTIME:PATH``.

    A directory needs ``recursive=True``. A destination that is an existing directory receives
    the source under its own name. ``jobs`` files move at once where files go one by one (object
    stores). ``progress``: None = a display in place (notebook) or tqdm on stderr, False = none.
    Raises ``InvalidArgument``/``AiravataError`` with one line; ``verify`` failing raises too.
    """
    jobs = checks.whole_number(jobs, "--jobs", 1, 64)
    s, d = resolve_pair(src, dst, file=file, manager=manager)
    return copy_ends(s, d, recursive=recursive, verify=verify, jobs=jobs, progress=progress)


def copy_ends(s: End, d: End, *, recursive: bool = False, verify: bool = False, jobs: int = 4,
              progress: Progress | bool | None = None) -> CopyResult:
    """``copy()`` between two resolved ends (for features that build their own, e.g. datasets)."""
    src, dst = s.label, d.label
    info = s.info()
    if info is None:
        raise InvalidArgument(f"{src}: no such file or directory")
    dinfo = d.info()
    if dinfo is not None and dinfo["type"] == "directory":
        d = dataclasses.replace(d, path=d.join(_basename(s)))
    if d.kind == s.kind and d.path == s.path and d.same_host(s):
        raise InvalidArgument(f"{src} and {dst} are the same path")
    prog = resolve_progress(progress)
    t0 = time.monotonic()
    if info["type"] == "directory" and not recursive:
        raise InvalidArgument(f"{src} is a directory: add --recursive")
    if s.kind == d.kind == "kernel" and s.runtime == d.runtime:  # a claim and a pod that mounts it
        from .claims import copy_in_pod

        prog.start(info["size"] if info["type"] == "file" else 0, 1, f"{s.label} -> {d.label}")
        try:
            mkdir_parent(d)
            files, size, skipped = copy_in_pod(s, d, tmp_name(d.path, copy_key(s, d), "kernel"))
            result = CopyResult(s.label, d.path, files=files, bytes=size, method="in-pod")
            result.skipped = skipped
            prog.advance(size, files)
        finally:
            prog.close()
    elif info["type"] == "directory":
        if "kernel" in (s.kind, d.kind):
            from . import kernelfiles

            key = copy_key(s, d)
            result = CopyResult(s.label, d.path, method="kernel-tar")
            try:
                result.files, result.bytes, result.skipped = kernelfiles.copy_tree(
                    s, d, prog, tmp_name(d.path, key, "kernel"), tmp_name(d.path, "old" + key, "kernel"))
            finally:
                prog.close()
        else:
            from .trees import copy_dir

            result = copy_dir(s, d, prog, jobs)
    else:
        prog.start(info["size"], 1, f"{s.label} -> {d.label}")
        try:
            result = _copy_file(s, d, info, prog)
        finally:
            prog.close()
    result.seconds = time.monotonic() - t0
    if verify:
        _verify(s, d, result, info["type"] == "directory")
    return result


def _basename(e: End) -> str:
    return os.path.basename(e.path.rstrip("/")) or "root"


def tmp_name(path: str, key: str, kind: str) -> str:
    mod = os.path if kind == "local" else posixpath
    return mod.join(mod.dirname(path), f".{mod.basename(path)}.part-{key[:12]}")


def copy_key(s: End, d: End) -> str:
    who = lambda e: (e.kind, e.path, e.runtime,  # noqa: E731
                     tuple(sorted((e.loc.ssh or {}).items())) if e.loc else None)
    return hashlib.sha256(repr((who(s), who(d))).encode()).hexdigest()


# -- resume records --------------------------------------------------------------------------
def _state_path(key: str) -> Any:
    return paths.private_dir(paths.home() / "copies") / f"{key}.json"


def _resume_offset(s: End, d: End, tmp: str, info: dict[str, Any], key: str) -> int:
    """Bytes of ``tmp`` that are a verified prefix of the source (0 = start over)."""
    sp = _state_path(key)
    if not sp.exists():
        return 0
    try:
        st = paths.read_json(sp)
    except (OSError, ValueError):
        return 0
    if st.get("size") != info["size"] or st.get("mtime") != info["mtime"]:
        return 0
    t = d.info(tmp)
    n = t["size"] if t else 0
    if not n or n > info["size"]:
        return 0
    return n if s.sha256(s.path, n) == d.sha256(tmp, n) else 0


def _copy_file(s: End, d: End, info: dict[str, Any], prog: Progress) -> CopyResult:
    key = copy_key(s, d)
    tmp = tmp_name(d.path, key, d.kind)
    size, mode = info["size"], (info.get("mode") or 0o644) & 0o777
    res = CopyResult(s.label, d.path, files=1, bytes=size)
    mkdir_parent(d)
    if d.same_host(s) and d.kind == "ssh":  # no byte crosses this machine
        res.method = "remote-cp"
        d.check(f"cp -- {shlex.quote(s.path)} {shlex.quote(tmp)} && chmod {mode:o} -- {shlex.quote(tmp)} && "
                f"mv -f -- {shlex.quote(tmp)} {shlex.quote(d.path)}", "cp")
        prog.advance(size, 1)
        return res
    offset = _resume_offset(s, d, tmp, info, key)
    paths.write_json(_state_path(key), {"src": s.label, "dst": d.path, "tmp": tmp, "size": size, "mtime": info["mtime"]})
    res.resumed_from = offset
    prog.advance(offset)
    cb = lambda n: prog.advance(n)  # noqa: E731
    if s.kind == "ssh" and d.kind == "ssh":  # two different SSH logins: through here, no resume
        offset = res.resumed_from = 0
    with reader_of(s, offset) as reader, writer_of(d, tmp, offset, stream=s.kind in ("ssh", "kernel")) as writer:
        if "kernel" in (s.kind, d.kind):
            from . import kernelfiles

            res.method = "kernel"
            if s.kind == "kernel":
                kernelfiles.download(s.manager, s.runtime or "", s.path, writer, offset, size, cb)
            else:
                kernelfiles.upload(d.manager, d.runtime or "", reader, tmp, offset, size, cb)
        elif s.kind == "ssh":
            res.method = "sftp"
            sshio.download(s.fs, s.path, writer, offset, size, cb)
        elif d.kind == "ssh":
            res.method = "sftp"
            sshio.upload(d.fs, reader, tmp, offset, size, cb)
        else:
            res.method = "local" if s.kind == d.kind == "local" else "fsspec"
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
                cb(len(chunk))
    _finish(d, tmp, d.path, mode)
    _state_path(key).unlink(missing_ok=True)
    prog.advance(0, 1)
    return res


def reader_of(s: End, offset: int, stream: bool = False) -> Any:
    """A file to read from (ssh sources are read by ``sshio.download`` unless ``stream``; kernel
    sources by ``kernelfiles.download``)."""
    if (s.kind == "ssh" and not stream) or s.kind == "kernel":
        return _Null()
    f = open(s.path, "rb") if s.kind == "local" else s.fs.open(s.path, "rb")
    if offset:
        f.seek(offset)
    return f


def writer_of(d: End, tmp: str, offset: int, stream: bool = False) -> Any:
    """A file to write to (ssh destinations are written by ``sshio.upload`` unless ``stream``;
    kernel destinations by ``kernelfiles.upload``)."""
    if (d.kind == "ssh" and not stream) or d.kind == "kernel":
        return _Null()
    if d.kind == "local":
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        f = os.fdopen(fd, "r+b")
        f.truncate(offset)
        f.seek(offset)
        return f
    return d.fs.open(tmp, "wb")  # object stores cannot append: no resume there


class _Null:
    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *a: Any) -> None:
        pass


def mkdir_parent(d: End) -> None:
    parent = os.path.dirname(d.path) if d.kind == "local" else posixpath.dirname(d.path)
    if d.kind == "local":
        os.makedirs(parent, exist_ok=True)
    elif d.kind == "ssh":
        d.check(f"mkdir -p -- {shlex.quote(parent)}", "mkdir")
    elif d.kind == "kernel":
        from . import kernelfiles

        kernelfiles.mkdir(d.manager, d.runtime or "", parent)
    else:
        d.fs.makedirs(parent, exist_ok=True)


def _finish(d: End, tmp: str, final: str, mode: int) -> None:
    """Set the final mode and rename the temporary file over the destination (atomic)."""
    if d.kind == "local":
        os.chmod(tmp, mode)
        os.replace(tmp, final)
    elif d.kind == "ssh":
        sshio.rename(d.fs, tmp, final, mode)
    elif d.kind == "kernel":
        from . import kernelfiles

        kernelfiles.finish(d.manager, d.runtime or "", tmp, final, mode)
    else:
        d.fs.mv(tmp, final)


# -- verification ----------------------------------------------------------------------------
def _verify(s: End, d: End, res: CopyResult, is_dir: bool) -> None:
    if is_dir:
        a, b = s.manifest(), d.manifest()
        res.verified = a == b
        if not res.verified:
            bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise AiravataError(f"verify failed: {len(bad)} file(s) differ between {s.label} and {d.path}, "
                                f"e.g. {bad[0]!r}; copy again")
        return
    a, b = s.sha256(s.path), d.sha256(d.path)
    res.verified, res.sha256 = a == b, a
    if a != b:
        raise AiravataError(f"verify failed: sha256 of {s.label} is {a[:16]}..., of {d.path} {b[:16]}...; copy again")


__all__ = ["copy", "copy_ends", "CopyResult"]
