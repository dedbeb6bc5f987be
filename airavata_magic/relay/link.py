"""``KernelLink``: the one zmq client of a Jupyter kernel in this package.

Used by the relay's loop (cells), the manager (readiness), the session recorder (an iopub-only
link to the notebook's own kernel) and backends that restart a kernel. A link belongs to the
thread that created it: zmq sockets are not thread-safe, so other threads hand it work with
``post`` (a queue plus a wake-up pipe the owner's poll loop watches) instead of touching it.
"""
from __future__ import annotations

import collections
import json
import os
import threading
import time
from hmac import compare_digest
from typing import Any, Iterable

import zmq
from jupyter_client.session import DELIM, Session
from zmq.utils.monitor import recv_monitor_message

from ..errors import KernelDied

HEARTBEAT_INTERVAL = 1.0  # seconds between pings while a cell runs
HEARTBEAT_TIMEOUT = 3.5  # no pong for this long = the kernel (or its tunnel) is gone
ALL_CHANNELS = ("shell", "stdin", "control", "iopub")


class KernelLink:
    """One client connection to one kernel, from its connection info (a kernel.json dict).

    ``channels`` limits the sockets opened (the recorder needs only ``("iopub",)``). Not
    thread-safe: only the thread that created the link (``owner``) may use its sockets; other
    threads ``post`` to it.
    """

    def __init__(self, info: dict[str, Any], label: str | None = None, *,
                 channels: Iterable[str] = ALL_CHANNELS) -> None:
        self.info = dict(info)
        self.label = label
        key = info.get("key", "")
        self.session = Session(
            key=key.encode() if isinstance(key, str) else key,
            signature_scheme=info.get("signature_scheme", "hmac-sha256"),
            username="airavata-magic",
        )
        self.owner = threading.get_ident()
        self._ctx = zmq.Context.instance()
        channels = set(channels)
        ident = self.session.bsession
        self._sockets: dict[str, zmq.Socket] = {}
        for name, kind, own_ident in (("shell", zmq.DEALER, True), ("stdin", zmq.DEALER, True),
                                      ("control", zmq.DEALER, False)):
            if name in channels:
                self._sockets[name] = self._socket(kind, f"{name}_port", ident if own_ident else None)
        self._iopub_monitor: zmq.Socket | None = None
        self._iopub_connects = 0
        if "iopub" in channels:
            sub = self._ctx.socket(zmq.SUB)
            sub.linger = 0
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            # Watch iopub's connection before connecting, so a later reconnect can be told apart.
            self._iopub_monitor = sub.get_monitor_socket(zmq.EVENT_CONNECTED)
            sub.connect(self._url("iopub_port"))
            self._sockets["iopub"] = sub
        self._hb: zmq.Socket | None = None
        #: the kernel's own Session id, from its kernel_info reply: a different one later means
        #: the kernel was replaced (e.g. restarted by a kubelet) and its state is gone
        self.kernel_session: str | None = None
        self._hb_sent_at: float | None = None
        self._hb_ok_at = time.monotonic()
        # Work posted by other threads, and a pipe whose read end the owner's poll loop watches.
        self._posted: collections.deque[Any] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: True while the owner's poll loop waits on this link (posted work is picked up there)
        self.driving = False
        self.closed = False

    # -- sockets -------------------------------------------------------------------------------
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

    def _channel(self, name: str) -> zmq.Socket:
        try:
            return self._sockets[name]
        except KeyError:
            raise RuntimeError(f"this kernel link has no {name} channel") from None

    @property
    def shell(self) -> zmq.Socket:
        return self._channel("shell")

    @property
    def stdin(self) -> zmq.Socket:
        return self._channel("stdin")

    @property
    def control(self) -> zmq.Socket:
        return self._channel("control")

    @property
    def iopub(self) -> zmq.Socket:
        return self._channel("iopub")

    def subscribe(self, topic: str) -> None:
        """Add an iopub subscription. The kernel answers a new topic with an ``iopub_welcome``
        on it, which proves that this subscriber receives everything published from then on."""
        self.iopub.setsockopt(zmq.SUBSCRIBE, topic.encode())

    # -- threads -------------------------------------------------------------------------------
    def owned_here(self) -> bool:
        """True in the thread that owns the link (the only one that may use its sockets)."""
        return threading.get_ident() == self.owner

    def check_owner(self) -> None:
        """Raise ``RuntimeError`` when called from a thread that does not own the link."""
        if not self.owned_here():
            raise RuntimeError(f"the kernel link{self._of()} is used from a thread that does not own it; "
                               "post() work to its owner instead")

    def post(self, item: Any) -> None:
        """Hand ``item`` to the owner thread (any thread may call this); its poll loop wakes up."""
        if self.closed:
            return  # its descriptors may already belong to another file
        self._posted.append(item)
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (the owner will wake anyway) or the link is closing

    @property
    def wake_fd(self) -> int:
        """A file descriptor that becomes readable when work was posted (for ``zmq.Poller``)."""
        return self._wake_r

    def take_posted(self) -> list[Any]:
        """Everything posted so far, in order (owner thread only)."""
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        items = []
        while self._posted:
            items.append(self._posted.popleft())
        return items

    # -- heartbeat -----------------------------------------------------------------------------
    def hb_socket(self) -> zmq.Socket:
        """The heartbeat REQ socket (opened on first use)."""
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
            self.hb_socket().send(b"ping")
            self._hb_sent_at = now

    def heartbeat_received(self, now: float) -> None:
        """Read a pong (the heartbeat socket was readable)."""
        self.hb_socket().recv()
        self._hb_ok_at = now

    def reconnected(self) -> bool:
        """True once after iopub's TCP connection was re-established (e.g. a tunnel came back).

        A SUB socket re-subscribes by itself, but output published before the subscription
        arrives is lost, so the caller re-runs the start-up handshake first."""
        seen = False
        while self._iopub_monitor is not None and self._iopub_monitor.poll(0):
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

    # -- messages ------------------------------------------------------------------------------
    def send_shell(self, msg_type: str, content: dict[str, Any], buffers: list | None = None) -> str:
        """Send a shell request; return its msg_id."""
        msg = self.session.msg(msg_type, content)
        self.session.send(self.shell, msg, buffers=buffers or None)
        return msg["header"]["msg_id"]

    def send_interrupt_request(self) -> None:
        """Ask the kernel to interrupt its running cell (the control channel's interrupt_request)."""
        self.session.send(self.control, self.session.msg("interrupt_request", {}))

    def recv(self, socket: zmq.Socket, content: bool = True) -> dict[str, Any]:
        """One message, its HMAC verified. Headers are parsed without jupyter_client's date
        conversion (half a millisecond per cell we do not need). With ``content=False`` the
        content stays packed bytes, so large stream output is passed on without decoding.
        Raises ``ValueError`` for a malformed or wrongly signed message."""
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
        """Wait until the kernel answers ``kernel_info`` AND its iopub reaches us; return the reply.

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
        """Close every socket (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._iopub_monitor is not None:
            try:
                self._sockets["iopub"].disable_monitor()
            except zmq.ZMQError:
                pass
        for s in (self._iopub_monitor, *self._sockets.values(), self._hb):
            if s is not None:
                s.close(linger=0)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
