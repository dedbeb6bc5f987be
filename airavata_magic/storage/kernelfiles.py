"""Files of a runtime that only its kernel can reach (a Kubernetes pod: no SSH, no shared disk).

Bytes travel as binary frames of comm messages on the kernel connection that already exists, in
8 MiB chunks; the kernel itself stats, hashes (``--verify`` is computed there), creates the parent
directory and renames the finished temporary file. Nothing of this package is needed in the pod:
the few lines it runs are sent with each request. Single files only; resumable like other copies.
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
