"""Files of a runtime that only its kernel can reach (a Kubernetes pod: no SSH, no shared disk).

Bytes travel as binary frames of comm messages on the kernel connection that already exists, in
8 MiB chunks; the kernel itself stats, hashes (``--verify`` is computed there), creates the parent
directory and renames the finished temporary file. Nothing of this package is needed in the pod:
the few lines it runs are sent with each request. Files resume like other copies; a directory
travels as one tar file (``copy_tree``), between a pod and this machine.
"""
from __future__ import annotations

import ast
import uuid
from typing import Any, BinaryIO, Callable

from ..errors import AiravataError

CHUNK = 8 << 20
WRITE_TARGET = "airavata_magic.file_write"
READ_TARGET = "airavata_magic.file_read"

# Each runs in a private namespace in the kernel (exec inside a user expression): the user's
# variables are neither read nor changed. ``args`` holds the call's arguments; ``result`` the answer.
_INFO = """
import os, stat
p = args["path"]
if not os.path.lexists(p):
    result = None
else:
    s = os.lstat(p)
    kind = "link" if stat.S_ISLNK(s.st_mode) else "directory" if stat.S_ISDIR(s.st_mode) else "file"
    result = {"type": kind, "size": s.st_size, "mtime": s.st_mtime, "mode": stat.S_IMODE(s.st_mode)}
"""
_SHA256 = """
import hashlib
h, left = hashlib.sha256(), args["limit"]
with open(args["path"], "rb") as f:
    while left is None or left > 0:
        b = f.read(1 << 20 if left is None else min(1 << 20, left))
        if not b:
            break
        h.update(b)
        left = None if left is None else left - len(b)
result = h.hexdigest()
"""
_MKDIR = "import os\nos.makedirs(args['path'], exist_ok=True)\nresult = True"
_FINISH = "import os\nos.chmod(args['tmp'], args['mode'])\nos.replace(args['tmp'], args['path'])\nresult = True"
_CWD = "import os\nresult = os.getcwd()"
_REGISTER = """
import os
def receive(comm, msg):
    d, bufs = msg["content"]["data"], msg.get("buffers") or []
    try:
        fd = os.open(d["path"], os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as f:
            if d["offset"] == 0:
                f.truncate(0)
            f.seek(d["offset"])
            f.write(bufs[0])
        comm.send({"ok": len(bufs[0])})
    except Exception as e:
        comm.send({"error": f"{type(e).__name__}: {e}"})
    comm.close()
try:
    from comm import get_comm_manager
    get_comm_manager().register_target(args["target"], receive)
except ImportError:
    get_ipython().kernel.comm_manager.register_target(args["target"], receive)
result = True
"""
_READ = """
try:
    from comm import create_comm
except ImportError:
    from ipykernel.comm import Comm as create_comm
with open(args["path"], "rb") as f:
    f.seek(args["offset"])
    left = args["size"] - args["offset"]
    while left > 0:
        b = f.read(min(args["chunk"], left))
        if not b:
            break
        left -= len(b)
        create_comm(target_name=args["target"], data={}, buffers=[b]).close()
result = args["size"] - left
"""


def call(manager: Any, runtime: str, src: str, **args: Any) -> Any:
    """Run ``src`` in a private namespace of ``runtime``'s kernel; its ``result`` comes back."""
    from .variables import QuietSink

    expr = f"(lambda ns: (exec({src!r}, ns), ns['result'])[1])({{'args': {args!r}}})"
    (out,) = manager.run([runtime], "", QuietSink(), allow_stdin=False, silent=True, user_expressions={"r": expr})
    value = out.user_expressions.get("r", {})
    if value.get("status") != "ok":
        raise AiravataError(f"runtime {runtime!r}: {value.get('ename', 'Error')}: {value.get('evalue', value)}")
    return ast.literal_eval(value["data"]["text/plain"])


def cwd(manager: Any, runtime: str) -> str:
    return call(manager, runtime, _CWD)


def info(manager: Any, runtime: str, path: str) -> dict[str, Any] | None:
    return call(manager, runtime, _INFO, path=path)


def sha256(manager: Any, runtime: str, path: str, limit: int | None = None) -> str:
    return call(manager, runtime, _SHA256, path=path, limit=limit)


def mkdir(manager: Any, runtime: str, path: str) -> None:
    call(manager, runtime, _MKDIR, path=path)


def finish(manager: Any, runtime: str, tmp: str, path: str, mode: int) -> None:
    """Set the final mode and rename the temporary file over the destination, in the pod."""
    call(manager, runtime, _FINISH, tmp=tmp, path=path, mode=mode)


def upload(manager: Any, runtime: str, src: BinaryIO, path: str, offset: int, size: int,
           cb: Callable[[int], None]) -> None:
    """Write bytes ``offset..size`` of ``src`` into ``path`` in the pod, one comm message per chunk."""
    from ..relay import relay_request
    from .variables import QuietSink

    call(manager, runtime, _REGISTER, target=WRITE_TARGET)
    link = manager.link(runtime)
    pos = offset
    while pos < size:
        data = src.read(min(CHUNK, size - pos))
        if not data:
            raise AiravataError(f"the source ended at {pos} bytes, expected {size} (changed during the copy?)")
        sink = QuietSink()
        content = {"comm_id": uuid.uuid4().hex, "target_name": WRITE_TARGET, "data": {"path": path, "offset": pos}}
        relay_request(link, "comm_open", content, [data], sink, timeout=120)
        replies = [c.get("data") or {} for t, c, _ in sink.comms if t == "comm_msg"]
        if not replies or "error" in replies[-1]:
            why = replies[-1]["error"] if replies else "no answer in time"
            raise AiravataError(f"writing {path} on runtime {runtime!r} failed: {why}")
        pos += len(data)
        cb(len(data))


class _Writer:
    """A sink that writes each chunk the kernel sends straight into the local file, in order."""

    def __init__(self, out: BinaryIO, cb: Callable[[int], None]) -> None:
        from .variables import QuietSink

        self.out, self.cb, self._quiet = out, cb, QuietSink()

    def __getattr__(self, name: str) -> Any:  # streams, displays, input: as QuietSink
        return getattr(self._quiet, name)

    def comm(self, link: Any, msg_type: str, content: dict[str, Any], buffers: list,
             metadata: dict[str, Any] | None = None) -> None:
        if msg_type == "comm_open" and content.get("target_name") == READ_TARGET and buffers:
            self.out.write(buffers[0])
            self.cb(len(buffers[0]))


def download(manager: Any, runtime: str, path: str, out: BinaryIO, offset: int, size: int,
             cb: Callable[[int], None]) -> None:
    """Append bytes ``offset..size`` of ``path`` in the pod to ``out`` (positioned at ``offset``)."""
    src = _READ
    args = {"path": path, "offset": offset, "size": size, "chunk": CHUNK, "target": READ_TARGET}
    code = f"(lambda ns: (exec({src!r}, ns), ns['result'])[1])({{'args': {args!r}}})"
    (res,) = manager.run([runtime], code, _Writer(out, cb), allow_stdin=False, silent=True)
    if res.status != "ok":
        err = res.error or {}
        raise AiravataError(f"reading {path} on runtime {runtime!r} failed: {err.get('ename')}: {err.get('evalue')}")


# -- directories: one tar file, made and unpacked by the kernel with archive.py's checks --------
_PACK = """
import os, tarfile, tempfile
entries, skipped = scan_tree(args["path"])
fd, tar_path = tempfile.mkstemp(prefix=".airavata-pack-", suffix=".tar")
os.close(fd)
with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as t:
    for p, rel, kind, size in entries:
        t.add(p, arcname=rel, recursive=False)
sizes = [size for _, _, kind, size in entries if kind == "file"]
result = {"tar": tar_path, "size": os.path.getsize(tar_path), "skipped": skipped, "files": len(sizes)}
"""
_MKTEMP = "import os, tempfile\nfd, result = tempfile.mkstemp(prefix='.airavata-unpack-', suffix='.tar')\nos.close(fd)"
_UNPACK = """
import os, shutil
tmp, final, old = args["tmp"], args["path"], args["old"]
shutil.rmtree(tmp, ignore_errors=True)
os.makedirs(tmp)
try:
    with open(args["tar"], "rb") as f:
        result = extract(f, tmp, refuse=False, stream=False)
finally:
    os.remove(args["tar"])
if os.path.lexists(final):
    os.replace(final, old)
os.replace(tmp, final)
shutil.rmtree(old, ignore_errors=True)
"""
_REMOVE = "import os\ntry:\n    os.remove(args['path'])\nexcept FileNotFoundError:\n    pass\nresult = True"


def _archive_source() -> str:
    import importlib.resources

    return (importlib.resources.files("airavata_magic.storage") / "archive.py").read_text()


def copy_tree(s: Any, d: Any, prog: Any, tmp: str, old: str) -> tuple[int, int, list[str]]:
    """A directory between this machine and a pod, as one tar file carried in chunks: made by
    the system ``tar`` (here) or the kernel (there), unpacked with every member checked, swapped
    into place. Links that leave the tree are skipped. Returns (files, bytes, skipped)."""
    import os
    import shutil
    import subprocess
    import tempfile

    from . import archive

    if s.kind == "local" and d.kind == "kernel":
        entries, skipped = archive.scan_tree(s.path)
        tar = shutil.which("tar")
        if tar is None:
            raise AiravataError("copying a directory to a pod needs the `tar` command on this machine")
        with tempfile.TemporaryFile() as packed:
            listing = b"".join(os.fsencode(rel) + b"\0" for _, rel, _, _ in entries)
            p = subprocess.run([tar, "-cf", "-", "-C", s.path, "--no-recursion", "--null", "-T", "-"],
                               input=listing, stdout=packed, stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise AiravataError(f"packing {s.label} failed: {p.stderr.decode(errors='replace').strip()[-300:]}")
            size = packed.tell()
            packed.seek(0)
            sizes = [n for _, _, kind, n in entries if kind == "file"]
            prog.start(size, len(sizes), f"{s.label} -> {d.label}")
            remote_tar = call(d.manager, d.runtime, _MKTEMP)
            try:
                upload(d.manager, d.runtime, packed, remote_tar, 0, size, lambda n: prog.advance(n))
            except BaseException:
                call(d.manager, d.runtime, _REMOVE, path=remote_tar)
                raise
        mkdir(d.manager, d.runtime, os.path.dirname(d.path))
        more = call(d.manager, d.runtime, _archive_source() + _UNPACK, tar=remote_tar, tmp=tmp, path=d.path, old=old)
        prog.advance(0, len(sizes))
        return len(sizes), sum(sizes), skipped + list(more)
    if s.kind == "kernel" and d.kind == "local":
        packed_info = call(s.manager, s.runtime, _archive_source() + _PACK, path=s.path)
        prog.start(packed_info["size"], packed_info["files"], f"{s.label} -> {d.label}")
        try:
            with tempfile.TemporaryFile() as packed:
                download(s.manager, s.runtime, packed_info["tar"], packed, 0, packed_info["size"],
                         lambda n: prog.advance(n))
                packed.seek(0)
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
                members: list[int] = []
                more = archive.extract(packed, tmp, refuse=False, stream=False,
                                       on_member=lambda m: members.append(m.size) if m.isfile() else None)
        finally:
            call(s.manager, s.runtime, _REMOVE, path=packed_info["tar"])
        if os.path.lexists(d.path):
            os.replace(d.path, old)
        os.replace(tmp, d.path)
        shutil.rmtree(old, ignore_errors=True)
        prog.advance(0, len(members))
        return len(members), sum(members), list(packed_info["skipped"]) + more
    raise AiravataError(f"directories go between a pod and this machine only; copy {s.label} to a local "
                        f"directory first, then on to {d.label}")


_MANIFEST = """
import hashlib, os
result = {}
for dirpath, dirnames, filenames in os.walk(args["path"]):
    for n in filenames:
        p = os.path.join(dirpath, n)
        if os.path.isfile(p) and not os.path.islink(p):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            result[os.path.normpath(os.path.relpath(p, args["path"]))] = h.hexdigest()
"""


def manifest(manager: Any, runtime: str, path: str) -> dict[str, str]:
    """{relative path: sha256} of every regular file of a tree in the pod, computed there."""
    return call(manager, runtime, _MANIFEST, path=path)


_STATS = """
import os
stats = []
for d, dirs, files in os.walk(args["path"]):
    for n in dirs + files:
        st = os.lstat(os.path.join(d, n))
        stats.append((st.st_size, st.st_mtime))
result = stats
"""


def read_bytes(manager: Any, runtime: str, path: str) -> bytes | None:
    """A regular file of the pod, whole, or None when there is none at ``path``."""
    import io

    found = info(manager, runtime, path)
    if not found or found["type"] != "file":
        return None
    out = io.BytesIO()
    download(manager, runtime, path, out, 0, found["size"], lambda n: None)
    return out.getvalue()


def tree_stats(manager: Any, runtime: str, path: str) -> list[tuple[int, float]]:
    """(size, mtime) of every entry under a directory in the pod (for a dataset's fingerprint)."""
    return call(manager, runtime, _STATS, path=path)
