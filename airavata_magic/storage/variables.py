"""Variables between the notebook and a runtime's kernel: ``push_vars`` and ``pull_vars``.

Values travel as pickle protocol 5 with out-of-band buffers, as binary frames of a comm message on
the kernel connection that already exists: NumPy arrays and DataFrames are not copied into the
pickle stream, no file touches a disk, and the remote side needs nothing but ipykernel (the code
it runs is sent with the request). A size limit (default 1 GiB) refuses bigger transfers in one
line that points to ``%copy_data``; nothing is ever truncated.
"""
from __future__ import annotations

import pickle

import uuid
from typing import Any

from .. import checks
from ..errors import AiravataError, InvalidArgument

DEFAULT_LIMIT = 1 << 30
PUSH_TARGET = "airavata_magic.push"
PULL_TARGET = "airavata_magic.pull"

# Runs on the runtime's kernel (no import of this package there). Defines nothing that stays.
_PULL_CODE = """
def _airavata_pull(names, limit, target):
    import pickle
    ns = get_ipython().user_ns
    for n in names:
        if n not in ns:
            raise NameError(f"name {n!r} is not defined on this runtime")
    bufs = []
    try:
        payload = pickle.dumps({n: ns[n] for n in names}, protocol=5, buffer_callback=bufs.append)
    except Exception as e:
        for n in names:
            try:
                pickle.dumps(ns[n], protocol=5, buffer_callback=lambda b: None)
            except Exception as e1:
                raise TypeError(f"{n!r} cannot be pickled ({type(e1).__name__}: {e1})") from None
        raise TypeError(f"the values cannot be pickled ({type(e).__name__}: {e})") from None
    raws = [b.raw() for b in bufs]
    total = len(payload) + sum(r.nbytes for r in raws)
    if total > limit:
        raise ValueError(f"{', '.join(names)}: {total} bytes is over the limit of {limit} bytes; "
                         "raise limit (--limit) or write a file and use %copy_data")
    try:
        from comm import create_comm
        c = create_comm(target_name=target, data={"bytes": total}, buffers=[payload] + raws)
    except (ImportError, NotImplementedError):
        from ipykernel.comm import Comm
        c = Comm(target_name=target, data={"bytes": total}, buffers=[payload] + raws)
    c.close()
try:
    _airavata_pull(__NAMES__, __LIMIT__, __TARGET__)
finally:
    del _airavata_pull
"""

_REGISTER_CODE = """
def _airavata_register(target):
    ip = get_ipython()
    def receive(comm, msg):
        import pickle
        bufs = msg.get("buffers") or []
        try:
            values = pickle.loads(bufs[0], buffers=bufs[1:])
            ip.user_ns.update(values)
            comm.send({"ok": sorted(values)})
        except Exception as e:
            comm.send({"error": f"{type(e).__name__}: {e}"})
        comm.close()
    try:
        from comm import get_comm_manager
        manager = get_comm_manager()
    except ImportError:
        manager = ip.kernel.comm_manager
    manager.register_target(target, receive)
try:
    _airavata_register(__TARGET__)
finally:
    del _airavata_register
"""


class QuietSink:
    """A sink for requests made on the user's behalf: keeps comm messages and stream text, shows nothing."""

    def __init__(self) -> None:
        self.comms: list[tuple[str, dict[str, Any], list]] = []
        self.streams: list[str] = []

    def stream(self, label: Any, name: str, text: str) -> None:
        self.streams.append(text)

    def stream_packed(self, label: Any, packed: bytes, unpack: Any) -> None:
        self.streams.append(unpack(packed).get("text", ""))

    def display(self, *a: Any) -> None: ...
    def clear_output(self, *a: Any) -> None: ...

    def input(self, *a: Any) -> str:
        return ""

    def comm(self, link: Any, msg_type: str, content: dict[str, Any], buffers: list,
             metadata: dict[str, Any] | None = None) -> None:
        self.comms.append((msg_type, content, buffers))


def _manager(manager: Any) -> Any:
    if manager is not None:
        return manager
    from .. import get_manager

    return get_manager()


def runtime_name(runtime: Any) -> str:
    """A runtime's name, from its name or from an ``am.Runtime`` handle."""
    name = getattr(runtime, "name", runtime)
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"give a runtime (its name or an am.Runtime), got {runtime!r}")
    return name


def _check_runtime(runtime: str) -> None:
    from ..runtime import LOCAL

    if runtime == LOCAL:
        raise InvalidArgument("'local' is this notebook's own kernel: its variables are already here")


def _check_limit(limit: int) -> int:
    return checks.whole_number(limit, "limit (bytes)", 1, 1 << 50)


def _raise_remote(outcome: Any, runtime: str) -> None:
    err = outcome.error or {}
    raise AiravataError(f"runtime {runtime!r}: {err.get('ename', 'Error')}: {err.get('evalue', '')}".rstrip())


def pull_vars(runtime: Any, names: list[str], *, limit: int = DEFAULT_LIMIT, manager: Any = None) -> dict[str, Any]:
    """Bring variables of ``runtime``'s kernel (a name or an ``am.Runtime``) here: ``{name: value}``.

    Raises one line when a name is undefined there, a value cannot be pickled, or the total is over
    ``limit`` bytes (nothing is truncated)."""
    runtime = runtime_name(runtime)
    _check_runtime(runtime)
    _check_limit(limit)
    if not names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise InvalidArgument(f"give variable names to pull, got {names!r}")
    m = _manager(manager)
    sink = QuietSink()
    code = (_PULL_CODE.replace("__NAMES__", repr(list(names))).replace("__LIMIT__", str(int(limit)))
            .replace("__TARGET__", repr(PULL_TARGET)))
    (outcome,) = m.run([runtime], code, sink, allow_stdin=False, silent=True)
    if outcome.status != "ok":
        _raise_remote(outcome, runtime)
    opened = [(c, b) for t, c, b in sink.comms if t == "comm_open" and c.get("target_name") == PULL_TARGET]
    if not opened:
        raise AiravataError(f"runtime {runtime!r} sent no values back (its ipykernel may be too old for comms)")
    content, buffers = opened[-1]
    if not buffers:
        raise AiravataError(f"runtime {runtime!r} sent a message without its data frames")
    return pickle.loads(buffers[0], buffers=buffers[1:])


def push_vars(runtime: Any, *, limit: int = DEFAULT_LIMIT, manager: Any = None, **values: Any) -> list[str]:
    """Send ``values`` (name=value) into ``runtime``'s kernel (a name or an ``am.Runtime``);
    returns the names set there.

    An unpicklable value is one line naming it; over ``limit`` bytes is refused before sending."""
    runtime = runtime_name(runtime)
    _check_runtime(runtime)
    _check_limit(limit)
    if not values:
        raise InvalidArgument("give variables to push")
    bufs: list[pickle.PickleBuffer] = []
    try:
        payload = pickle.dumps(values, protocol=5, buffer_callback=bufs.append)
    except Exception as e:  # noqa: BLE001 - find the culprit and name it
        for n, v in values.items():
            try:
                pickle.dumps(v, protocol=5, buffer_callback=lambda b: None)
            except Exception as e1:  # noqa: BLE001
                raise InvalidArgument(f"{n!r} cannot be pickled ({type(e1).__name__}: {e1})") from None
        raise InvalidArgument(f"the values cannot be pickled ({type(e).__name__}: {e})") from None
    raws = [b.raw() for b in bufs]
    total = len(payload) + sum(r.nbytes for r in raws)
    if total > limit:
        raise InvalidArgument(f"{', '.join(values)}: {total} bytes is over the limit of {limit} bytes; "
                              "raise limit (--limit) or write a file and use %copy_data")
    m = _manager(manager)
    sink = QuietSink()
    (outcome,) = m.run([runtime], _REGISTER_CODE.replace("__TARGET__", repr(PUSH_TARGET)), sink, allow_stdin=False, silent=True)
    if outcome.status != "ok":
        _raise_remote(outcome, runtime)
    from ..relay import relay_request

    link = m.link(runtime)
    content = {"comm_id": uuid.uuid4().hex, "target_name": PUSH_TARGET, "data": {"bytes": total}}
    # A generous deadline: 1 GiB over a slow tunnel takes a while; the heartbeat still catches a death.
    relay_request(link, "comm_open", content, [payload, *raws], sink, timeout=60 + total / 10e6)
    replies = [c.get("data") or {} for t, c, _ in sink.comms if t == "comm_msg"]
    if not replies:
        raise AiravataError(f"runtime {runtime!r} did not confirm the values within the time allowed")
    if "error" in replies[-1]:
        raise AiravataError(f"runtime {runtime!r} could not load the values: {replies[-1]['error']}")
    return list(replies[-1].get("ok", []))



