"""Directory copies for ``copying.copy``: one tar stream over SSH, ``cp`` on one host, file by file
elsewhere (``jobs`` at once). A finished tree is built under a temporary name and swapped in;
links that point out of the source tree are skipped and reported, never followed."""
from __future__ import annotations

import os
import posixpath
import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import AiravataError
from . import archive, sshio
from .copying import CHUNK, CopyResult, copy_key, mkdir_parent, reader_of, tmp_name, writer_of
from .ends import End
from .progress import Progress


def _tree_totals(s: End) -> tuple[int, int]:
    if s.kind == "local":
        n = b = 0
        for p, rel, is_dir in archive.walk_safe(s.path):
            if not is_dir and not rel.startswith("!") and not os.path.islink(p):
                n, b = n + 1, b + os.path.getsize(p)
        return b, n
    if s.kind == "ssh":
        out = s.check(f"find {shlex.quote(s.path)} -type f -printf '%s\\n'", "find")
        sizes = [int(x) for x in out.split()]
        return sum(sizes), len(sizes)
    files = s.fs.find(s.path, detail=True)
    return sum(int(i.get("size") or 0) for i in files.values()), len(files)


def copy_dir(s: End, d: End, prog: Progress, jobs: int) -> CopyResult:
    key = copy_key(s, d)
    tmp = tmp_name(d.path, key, d.kind)
    total, nfiles = _tree_totals(s)
    res = CopyResult(s.label, d.path, files=nfiles, bytes=total)
    prog.start(total, nfiles, f"{s.label} -> {d.label}")
    mkdir_parent(d)
    _remove_tree(d, tmp)  # a half-made tree from an interrupted run: start it again
    try:
        if s.same_host(d) and s.kind == "ssh":
            res.method = "remote-cp"
            d.check(f"cp -a -- {shlex.quote(s.path)} {shlex.quote(tmp)}", "cp")
            skipped = d.check(f"find {shlex.quote(tmp)} -type l -lname '/*' -print -delete", "find")
            res.skipped = skipped.split("\n")[:-1]
            prog.advance(total, nfiles)
        elif s.kind == "local" and d.kind == "ssh":
            res.method = "tar-stream"
            res.skipped = _tar_up(s, d, tmp, prog)
        elif s.kind == "ssh" and d.kind == "local":
            res.method = "tar-stream"
            res.skipped = _tar_down(s, tmp, prog)
        else:
            res.method = "local" if s.kind == d.kind == "local" else "fsspec"
            res.skipped = _per_file(s, d, tmp, prog, jobs)
        _swap_dir(d, tmp, d.path, key)
    except BaseException:
        _remove_tree(d, tmp)
        raise
    finally:
        prog.close()
    return res


def _tar_up(s: End, d: End, tmp: str, prog: Progress) -> list[str]:
    import tarfile

    skipped: list[str] = []
    buf = _Chunks()

    def chunks() -> Any:
        with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for p, rel, is_dir in archive.walk_safe(s.path):
                if rel.startswith("!"):
                    skipped.append(rel[1:])
                    continue
                tar.add(p, arcname=rel, recursive=False)
                if not is_dir and not os.path.islink(p):
                    prog.advance(os.path.getsize(p), 1)
                if buf.size >= CHUNK:
                    yield buf.take()
        yield buf.take()

    gen = chunks()

    def source() -> bytes:
        for data in gen:
            if data:
                return data
        return b""

    q = shlex.quote(tmp)
    rc, err = sshio.stream_in(d.fs, f"mkdir -p -- {q} && tar -xf - -C {q} --no-same-owner", source)
    if rc != 0:
        raise AiravataError(f"unpacking on {d.label} failed: {err.strip()[-300:]}")
    return skipped


class _Chunks:
    """A write-only file that collects bytes for a streaming tarfile."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, b: bytes) -> int:
        self.parts.append(bytes(b))
        self.size += len(b)
        return len(b)

    def take(self) -> bytes:
        data, self.parts, self.size = b"".join(self.parts), [], 0
        return data


def _tar_down(s: End, tmp: str, prog: Progress) -> list[str]:
    import threading

    os.makedirs(tmp, mode=0o700)
    r, w = os.pipe()
    out: dict[str, Any] = {}

    def extract() -> None:
        with os.fdopen(r, "rb") as f:
            try:
                out["skipped"] = archive.extract(f, tmp, refuse=False,
                                                 on_member=lambda m: prog.advance(m.size, 1) if m.isfile() else None)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                out["error"] = e
            f.read()  # drain so the writer never blocks on a reader that gave up

    t = threading.Thread(target=extract, daemon=True)
    t.start()
    wf = os.fdopen(w, "wb")

    def sink(chunk: bytes) -> None:
        wf.write(chunk)

    try:
        rc, err = sshio.stream_out(s.fs, ["tar", "-cf", "-", "-C", s.path, "."], sink)
    finally:
        wf.close()
        t.join()
    if rc != 0:
        raise AiravataError(f"reading {s.label} failed: {err.strip()[-300:]}")
    if "error" in out:
        raise AiravataError(f"unpacking {s.label} failed: {out['error']}")
    return out.get("skipped", [])


def _per_file(s: End, d: End, tmp: str, prog: Progress, jobs: int) -> list[str]:
    skipped: list[str] = []
    items: list[tuple[str, str]] = []
    if s.kind == "local":
        for p, rel, is_dir in archive.walk_safe(s.path):
            if rel.startswith("!"):
                skipped.append(rel[1:])
            elif os.path.islink(p) and d.kind == "local":
                os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
                os.symlink(os.readlink(p), os.path.join(tmp, rel))
            elif not is_dir and not os.path.islink(p):
                items.append((p, rel))
    else:
        items = [(p, posixpath.relpath(p, s.path)) for p in s.fs.find(s.path)]

    def one(item: tuple[str, str]) -> None:
        p, rel = item
        dst = os.path.join(tmp, rel) if d.kind == "local" else posixpath.join(tmp, rel)
        fs = End(s.kind, p, s.label, s.fs, s.loc)
        dd = End(d.kind, dst, d.label, d.fs, d.loc)
        mkdir_parent(dd)
        with reader_of(fs, 0, stream=True) as reader, writer_of(dd, dst, 0, stream=True) as writer:
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
                prog.advance(len(chunk))
        prog.advance(0, 1)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, items))
    return skipped


def _remove_tree(d: End, path: str) -> None:
    if d.kind == "local":
        shutil.rmtree(path, ignore_errors=True)
    elif d.kind == "ssh":
        d.run(f"rm -rf -- {shlex.quote(path)}")
    elif d.fs.exists(path):
        d.fs.rm(path, recursive=True)


def _swap_dir(d: End, tmp: str, final: str, key: str) -> None:
    """Put a finished tree in place: the old one (if any) is moved aside, then removed."""
    old = tmp_name(final, "old" + key, d.kind)
    if d.kind == "local":
        if os.path.lexists(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    elif d.kind == "ssh":
        q, qt, qo = shlex.quote(final), shlex.quote(tmp), shlex.quote(old)
        d.check(f"if [ -e {q} ] || [ -L {q} ]; then mv -- {q} {qo}; fi && mv -- {qt} {q} && rm -rf -- {qo}", "mv")
    else:
        if d.fs.exists(final):
            d.fs.rm(final, recursive=True)
        d.fs.mv(tmp, final, recursive=True)
