"""The relay: runs a cell on a remote kernel and replays its messages in the notebook.

``KernelLink`` is a small zmq client of one kernel (shell, iopub, stdin, control, heartbeat).
``run_cell`` sends one ``execute_request`` to one or several links and waits on all their sockets
with one ``zmq.Poller`` (no sleeps), handing every iopub message of that request to an
``OutputSink`` until both the ``execute_reply`` and the ``idle`` status have arrived. The sink
decides where output goes (``NotebookSink``: the notebook kernel's own display machinery).
"""
from __future__ import annotations

import getpass
import json
import sys
from hmac import compare_digest
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import zmq
from jupyter_client.session import DELIM, Session
from zmq.utils.monitor import recv_monitor_message

from .errors import KernelDied, RequestLost

HEARTBEAT_INTERVAL = 1.0  # seconds between pings while a cell runs
HEARTBEAT_TIMEOUT = 3.5  # no pong for this long = the kernel (or its tunnel) is gone
LOST_REQUEST_AFTER = 10.0  # a request unanswered this long after a reconnect was lost in the drop
POLL_MS = 250  # longest wait on the sockets before checking heartbeat, walltime and liveness


class OutputSink(Protocol):
    """Where a relayed cell's output goes."""

    def stream(self, label: str | None, name: str, text: str) -> None: ...
    def stream_packed(self, label: str | None, packed: bytes, unpack: Callable[[bytes], Any]) -> None: ...
    def display(self, label: str | None, msg_type: str, content: dict[str, Any]) -> None: ...
    def clear_output(self, label: str | None, wait: bool) -> None: ...
    def input(self, label: str | None, prompt: str, password: bool) -> str: ...
    def comm(self, link: "KernelLink", msg_type: str, content: dict[str, Any], buffers: list) -> None: ...


@dataclass
class CellOutcome:
    """How a cell ended on one kernel."""

    label: str | None
    status: str = "ok"  # ok | error | aborted
    execution_count: int | None = None
    result: dict[str, Any] | None = None  # execute_result content (data, metadata)
    error: dict[str, Any] | None = None  # ename, evalue, traceback
    user_expressions: dict[str, Any] = field(default_factory=dict)


class KernelLink:
    """One client connection to one kernel, from its connection info.

    Not thread-safe: one cell at a time, from the thread that runs cells.
    """

    def __init__(self, info: dict[str, Any], label: str | None = None) -> None:
        self.info = dict(info)
        self.label = label
        key = info.get("key", "")
        self.session = Session(
            key=key.encode() if isinstance(key, str) else key,
            signature_scheme=info.get("signature_scheme", "hmac-sha256"),
            username="airavata-magic",
        )
        self._ctx = zmq.Context.instance()
        ident = self.session.bsession
        self.shell = self._socket(zmq.DEALER, "shell_port", ident)
        self.stdin = self._socket(zmq.DEALER, "stdin_port", ident)
        self.control = self._socket(zmq.DEALER, "control_port", None)
        self.iopub = self._ctx.socket(zmq.SUB)
        self.iopub.linger = 0
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        # Watch iopub's connection before connecting, so a later reconnect can be told apart.
        self._iopub_monitor = self.iopub.get_monitor_socket(zmq.EVENT_CONNECTED)
        self._iopub_connects = 0
        self.iopub.connect(self._url("iopub_port"))
        self._hb: zmq.Socket | None = None
        #: the kernel's own Session id, from its kernel_info reply: a different one later means
        #: the kernel was replaced (e.g. restarted by a kubelet) and its state is gone
        self.kernel_session: str | None = None
        self._hb_sent_at: float | None = None
        self._hb_ok_at = time.monotonic()
        self.closed = False

    def _url(self, port_key: str) -> str:
        transport = self.info.get("transport", "tcp")
        ip = self.info.get("ip", "127.0.0.1")
        port = self.info[port_key]
        return f"ipc://{ip}-{port}" if transport == "ipc" else f"tcp://{ip}:{port}"

    def _socket(self, kind: int, port_key: str, ident: bytes | None) -> zmq.Socket:
        s = self._ctx.socket(kind)
        s.linger = 0
        if ident:
            s.identity = ident
        s.connect(self._url(port_key))
        return s

    # -- heartbeat -----------------------------------------------------------------------------
    def _hb_socket(self) -> zmq.Socket:
        if self._hb is None:
            s = self._ctx.socket(zmq.REQ)
            s.linger = 0
            # A ping lost with a dropped tunnel must not wedge the REQ socket: allow a new ping
            # before the old pong, and drop pongs that answer an older ping.
            s.setsockopt(zmq.REQ_RELAXED, 1)
            s.setsockopt(zmq.REQ_CORRELATE, 1)
            s.connect(self._url("hb_port"))
            self._hb = s
        return self._hb

    def heartbeat_start(self, now: float) -> None:
        """A cell starts: the death clock starts now; the first ping goes out after
        HEARTBEAT_INTERVAL, so short cells cost no heartbeat traffic at all."""
        self._hb_ok_at = now
        self._hb_sent_at = now

    def heartbeat_tick(self, now: float) -> None:
        """Ping every HEARTBEAT_INTERVAL; raise ``KernelDied`` when no pong came for HEARTBEAT_TIMEOUT."""
        if now - self._hb_ok_at > HEARTBEAT_TIMEOUT:
            raise KernelDied(f"the kernel{self._of()} stopped answering its heartbeat for {HEARTBEAT_TIMEOUT:.0f} s",
                             self.label)
        if self._hb_sent_at is None or now - self._hb_sent_at >= HEARTBEAT_INTERVAL:
            self._hb_socket().send(b"ping")
            self._hb_sent_at = now

    def heartbeat_received(self, now: float) -> None:
        self._hb_socket().recv()
        self._hb_ok_at = now

    def reconnected(self) -> bool:
        """True once after iopub's TCP connection was re-established (e.g. a tunnel came back).

        A SUB socket re-subscribes by itself, but output published before the subscription
        arrives is lost, so the caller re-runs the start-up handshake first."""
        seen = False
        while self._iopub_monitor.poll(0):
            event = recv_monitor_message(self._iopub_monitor)
            if event["event"] == zmq.EVENT_CONNECTED:
                self._iopub_connects += 1
                seen = self._iopub_connects > 1
        return seen

    def check_kernel_session(self, msg: dict[str, Any]) -> None:
        """Remember the kernel's session id; raise ``KernelDied`` if a message shows another."""
        session = msg["header"].get("session")
        if not session:
            return
        if self.kernel_session is None:
            self.kernel_session = session
        elif session != self.kernel_session:
            raise KernelDied(f"the kernel{self._of()} was replaced by a new one (it died and was restarted); "
                             "its variables are gone", self.label)

    def _of(self) -> str:
        return f" of runtime {self.label!r}" if self.label else ""

    # -- requests ------------------------------------------------------------------------------
    def send_shell(self, msg_type: str, content: dict[str, Any]) -> str:
        msg = self.session.msg(msg_type, content)
        self.session.send(self.shell, msg)
        return msg["header"]["msg_id"]

    def send_interrupt_request(self) -> None:
        self.session.send(self.control, self.session.msg("interrupt_request", {}))

    def send_shutdown_request(self, restart: bool = False) -> None:
        self.session.send(self.control, self.session.msg("shutdown_request", {"restart": restart}))

    def recv(self, socket: zmq.Socket, content: bool = True) -> dict[str, Any]:
        """One message, its HMAC verified. Headers are parsed without jupyter_client's date
        conversion (half a millisecond per cell we do not need). With ``content=False`` the
        content stays packed bytes, so large stream output is passed on without decoding."""
        frames = socket.recv_multipart(copy=False)
        for i, f in enumerate(frames):
            if f.bytes == DELIM:
                break
        else:
            raise ValueError("a kernel message without the <IDS|MSG> delimiter")
        parts = [f.bytes for f in frames[i + 1 : i + 6]]
        if len(parts) < 5:
            raise ValueError("a truncated kernel message")
        if self.session.auth is not None and not compare_digest(parts[0], self.session.sign(parts[1:5])):
            raise ValueError("a kernel message with a bad signature (wrong key?)")
        header = json.loads(parts[1])
        return {
            "header": header,
            "msg_id": header.get("msg_id"),
            "msg_type": header.get("msg_type"),
            "parent_header": json.loads(parts[2]),
            "metadata": json.loads(parts[3]),
            "content": json.loads(parts[4]) if content else parts[4],
            "buffers": [f.buffer for f in frames[i + 6 :]],
        }

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Wait until the kernel answers ``kernel_info`` AND its iopub reaches us.

        A SUB socket only receives after its subscription has propagated; until the kernel's
        first status message arrives here, output of the next cell could be lost.
        """
        deadline = time.monotonic() + timeout
        poller = zmq.Poller()
        poller.register(self.shell, zmq.POLLIN)
        poller.register(self.iopub, zmq.POLLIN)
        reply: dict[str, Any] | None = None
        iopub_seen = False
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                what = "kernel_info" if reply is None else "its first iopub message"
                raise KernelDied(f"the kernel{self._of()} did not answer {what} within {timeout:.0f} s", self.label)
            if now >= next_send and (reply is None or not iopub_seen):
                self.send_shell("kernel_info_request", {})
                next_send = now + (1.0 if reply is None else 0.2)
            events = dict(poller.poll(max(1, int((min(deadline, next_send) - now) * 1000))))
            if self.shell in events:
                msg = self.recv(self.shell)
                if msg["msg_type"] == "kernel_info_reply":
                    reply = msg["content"]
                    self.check_kernel_session(msg)
            if self.iopub in events:
                self.recv(self.iopub)
                iopub_seen = True
            if reply is not None and iopub_seen:
                self._hb_ok_at = time.monotonic()
                self.reconnected()  # consume connect events seen so far
                return reply

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.iopub.disable_monitor()
        except zmq.ZMQError:
            pass
        for s in (self._iopub_monitor, self.shell, self.stdin, self.control, self.iopub, self._hb):
            if s is not None:
                s.close(linger=0)


class _Execution:
    """The state of one execute_request on one link."""

    def __init__(self, link: KernelLink, sink: OutputSink, msg_id: str) -> None:
        self.link, self.sink, self.msg_id = link, sink, msg_id
        self.outcome = CellOutcome(label=link.label)
        self.replied = False
        self.idle = False
        self.started = False  # any iopub message for this request has arrived
        self.reconnected_at: float | None = None

    @property
    def done(self) -> bool:
        return self.replied and self.idle

    def on_iopub(self, msg: dict[str, Any]) -> None:
        if msg["parent_header"].get("msg_id") != self.msg_id:
            return
        self.link.check_kernel_session(msg)
        self.started = True
        t, c = msg["msg_type"], msg["content"]
        label = self.link.label
        if t == "stream":
            # Streams are most of the bytes: hand them on still packed (see NotebookSink).
            if isinstance(c, bytes):
                self.sink.stream_packed(label, c, self.link.session.unpack)
            else:
                self.sink.stream(label, c.get("name", "stdout"), c.get("text", ""))
            return
        if isinstance(c, bytes):
            c = self.link.session.unpack(c)
        if t in ("display_data", "update_display_data"):
            self.sink.display(label, t, c)
        elif t == "execute_result":
            self.outcome.result = c
            self.outcome.execution_count = c.get("execution_count")
        elif t == "error":
            self.outcome.error = c
        elif t == "clear_output":
            self.sink.clear_output(label, bool(c.get("wait")))
        elif t == "status" and c.get("execution_state") == "idle":
            self.idle = True
        elif t in ("comm_open", "comm_msg", "comm_close"):
            self.sink.comm(self.link, t, c, list(msg.get("buffers") or []))
        # execute_input and others are not relayed

    def on_shell(self, msg: dict[str, Any]) -> None:
        if msg["parent_header"].get("msg_id") != self.msg_id or msg["msg_type"] != "execute_reply":
            return
        self.link.check_kernel_session(msg)
        c = msg["content"]
        self.replied = True
        self.outcome.status = c.get("status", "error")
        self.outcome.execution_count = c.get("execution_count", self.outcome.execution_count)
        self.outcome.user_expressions = c.get("user_expressions") or {}
        if self.outcome.status == "error" and self.outcome.error is None:
            self.outcome.error = {k: c.get(k) for k in ("ename", "evalue", "traceback")}

    def on_stdin(self, msg: dict[str, Any]) -> None:
        if msg["msg_type"] != "input_request":
            return
        c = msg["content"]
        try:
            value = self.sink.input(self.link.label, c.get("prompt", ""), bool(c.get("password")))
        except KeyboardInterrupt:
            self.link.send_interrupt_request()
            value = ""
        self.link.session.send(self.link.stdin, "input_reply", {"value": value}, parent=msg)


def run_cell(
    links: list[KernelLink],
    code: str,
    sink: OutputSink,
    *,
    allow_stdin: bool = True,
    silent: bool = False,
    user_expressions: dict[str, str] | None = None,
    interrupt: Callable[[KernelLink], None] | None = None,
    tick: Callable[[], None] | None = None,
    alive: Callable[[KernelLink], bool | None] | None = None,
) -> list[CellOutcome]:
    """Execute ``code`` on every link at once and relay outputs until each has finished.

    ``interrupt(link)`` is called for each unfinished link when the local cell is interrupted;
    the remote cells then get 5 s to end before ``KeyboardInterrupt`` propagates here.
    ``tick()`` runs about once a second (walltime warnings). ``alive(link)`` may say a kernel is
    gone sooner than the heartbeat can. Raises ``KernelDied`` naming the runtime that vanished.
    """
    content = {
        "code": code,
        "silent": silent,
        "store_history": not silent,
        "user_expressions": user_expressions or {},
        "allow_stdin": allow_stdin,
        "stop_on_error": True,
    }
    for link in links:
        if link.reconnected():
            link.wait_ready(timeout=HEARTBEAT_TIMEOUT * 3)
    runs = [_Execution(link, sink, link.send_shell("execute_request", content)) for link in links]
    _drive(runs, interrupt=interrupt, tick=tick, alive=alive)
    return [r.outcome for r in runs]


def relay_request(link: KernelLink, msg_type: str, content: dict[str, Any], buffers: list,
                  sink: OutputSink, timeout: float = 60.0) -> None:
    """Send a shell message that has no reply (e.g. a widget's ``comm_msg``) and relay what the
    kernel publishes for it until it is idle again."""
    msg = link.session.msg(msg_type, content)
    link.session.send(link.shell, msg, buffers=buffers or None)
    run = _Execution(link, sink, msg["header"]["msg_id"])
    run.replied = True
    _drive([run], deadline=time.monotonic() + timeout)


def _drive(runs: list[_Execution], *, interrupt: Callable[[KernelLink], None] | None = None,
           tick: Callable[[], None] | None = None, alive: Callable[[KernelLink], bool | None] | None = None,
           deadline: float | None = None) -> None:
    """Wait on every run's sockets at once until each has its reply and its idle status."""
    poller = zmq.Poller()
    by_socket: dict[Any, tuple[_Execution, str]] = {}
    for run in runs:
        for name in ("iopub", "shell", "stdin"):
            sock = getattr(run.link, name)
            poller.register(sock, zmq.POLLIN)
            by_socket[sock] = (run, name)
        hb = run.link._hb_socket()
        poller.register(hb, zmq.POLLIN)
        by_socket[hb] = (run, "hb")
        run.link.heartbeat_start(time.monotonic())
    interrupted_at: float | None = None
    last_tick = time.monotonic()
    while not all(r.done for r in runs):
        try:
            events = poller.poll(POLL_MS)
            now = time.monotonic()
            for sock, _ in events:
                run, name = by_socket[sock]
                if name == "hb":
                    run.link.heartbeat_received(now)
                    continue
                msg = run.link.recv(sock, content=name != "iopub")
                getattr(run, f"on_{name}")(msg)
            for run in runs:
                if not run.done:
                    run.link.heartbeat_tick(now)
                    if not run.started:
                        if run.reconnected_at is None and run.link.reconnected():
                            run.reconnected_at = now
                        if run.reconnected_at is not None and now - run.reconnected_at > LOST_REQUEST_AFTER:
                            raise RequestLost(f"the connection to {run.link.label or 'the kernel'} dropped while "
                                              "the cell was being sent and it never started; run the cell again")
                    if alive is not None and alive(run.link) is False:
                        raise KernelDied(f"the kernel{run.link._of()} has exited", run.link.label)
            if tick is not None and now - last_tick >= 1.0:
                last_tick = now
                tick()
            if deadline is not None and now > deadline:
                return
            if interrupted_at is not None and now - interrupted_at > 5.0:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            if interrupted_at is not None:
                raise
            interrupted_at = time.monotonic()
            for run in runs:
                if not run.done:
                    (interrupt or KernelLink.send_interrupt_request)(run.link)
    if interrupted_at is not None:
        raise KeyboardInterrupt


class _CommProxy:
    """Stands in the notebook kernel's comm manager for a comm that lives on a remote kernel:
    messages the frontend sends to it (e.g. a widget's new value) are forwarded to that kernel."""

    def __init__(self, comm_id: str, target_name: str, link: KernelLink, sink: "NotebookSink") -> None:
        self.comm_id, self.target_name, self.link, self.sink = comm_id, target_name, link, sink
        self._closed = False

    def handle_msg(self, msg: dict[str, Any]) -> None:
        if not self.link.closed:
            relay_request(self.link, "comm_msg", msg["content"], msg.get("buffers") or [], self.sink)

    def handle_close(self, msg: dict[str, Any]) -> None:
        if not self.link.closed:
            relay_request(self.link, "comm_close", msg["content"], msg.get("buffers") or [], self.sink)


class NotebookSink:
    """Replays relayed output in the notebook kernel it runs in, as if produced locally.

    With a label (several runtimes at once), stream lines are prefixed ``[label] `` and each
    rich output is preceded by its label.
    """

    def __init__(self, labelled: bool = False) -> None:
        self.labelled = labelled
        self._line_start: dict[tuple[str | None, str], bool] = {}
        self._kernel = self._notebook_kernel()

    @staticmethod
    def _notebook_kernel() -> Any:
        """The ipykernel running this notebook, if any (None in a terminal IPython)."""
        try:
            from IPython import get_ipython

            kernel = getattr(get_ipython(), "kernel", None)
        except ImportError:
            return None
        if kernel is None or not all(hasattr(kernel, a) for a in ("session", "iopub_socket", "get_parent")):
            return None
        return kernel

    def stream_packed(self, label: str | None, packed: bytes, unpack: Callable[[bytes], Any]) -> None:
        """Forward a remote stream message's packed content as this kernel's own stream output.

        Jupyter's Session accepts already-packed content for relays; it is re-signed with this
        kernel's key and parent. Local stdout/stderr are flushed first so order is kept.
        """
        if self.labelled or self._kernel is None:
            c = unpack(packed)
            self.stream(label, c.get("name", "stdout"), c.get("text", ""))
            return
        sys.stdout.flush()
        sys.stderr.flush()
        k = self._kernel
        k.session.send(k.iopub_socket, "stream", content=packed, parent=k.get_parent("shell"), ident=b"stream")

    def stream(self, label: str | None, name: str, text: str) -> None:
        out = sys.stderr if name == "stderr" else sys.stdout
        if self.labelled and label is not None:
            text = self._prefix(label, name, text)
        out.write(text)

    def _prefix(self, label: str, name: str, text: str) -> str:
        key = (label, name)
        at_start = self._line_start.get(key, True)
        prefix = f"[{label}] "
        lines = text.split("\n")
        out = []
        for i, line in enumerate(lines):
            if (i > 0 or at_start) and (line or i < len(lines) - 1):
                line = prefix + line
            out.append(line)
        self._line_start[key] = text.endswith("\n")
        return "\n".join(out)

    def display(self, label: str | None, msg_type: str, content: dict[str, Any]) -> None:
        from IPython.display import publish_display_data

        if self.labelled and label is not None and msg_type == "display_data":
            sys.stdout.write(f"[{label}] output:\n")
            sys.stdout.flush()
        publish_display_data(
            content.get("data", {}),
            content.get("metadata") or {},
            transient=content.get("transient") or {},
            update=msg_type == "update_display_data",
        )

    def clear_output(self, label: str | None, wait: bool) -> None:
        from IPython.display import clear_output

        clear_output(wait=wait)

    def comm(self, link: KernelLink, msg_type: str, content: dict[str, Any], buffers: list) -> None:
        """Widgets: republish the remote kernel's comm messages to the frontend, and register a
        proxy so the frontend's replies reach the remote comm. Needs an ipykernel notebook."""
        k = self._kernel
        manager = getattr(k, "comm_manager", None)
        if k is None or manager is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        k.session.send(k.iopub_socket, msg_type, content=content, parent=k.get_parent("shell"),
                       buffers=[bytes(b) for b in buffers] or None, ident=msg_type.encode())
        comm_id = content.get("comm_id")
        if msg_type == "comm_open" and comm_id:
            manager.register_comm(_CommProxy(comm_id, content.get("target_name", ""), link, self))
        elif msg_type == "comm_close" and comm_id:
            manager.comms.pop(comm_id, None)

    def input(self, label: str | None, prompt: str, password: bool) -> str:
        if self.labelled and label is not None:
            prompt = f"[{label}] {prompt}"
        sys.stdout.flush()
        if password:
            from . import secret_values

            value = getpass.getpass(prompt)
            secret_values.remember(value)
            return value
        return input(prompt)
