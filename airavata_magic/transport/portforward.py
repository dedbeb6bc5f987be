"""A pod's ports on local loopback, through the API server's ``pods/portforward`` (WebSocket).

Each local TCP connection gets its own WebSocket stream (``v4.channel.k8s.io``), as
``kubectl port-forward`` gives each connection its own stream. Frames carry a channel byte:
for the one port of a stream, channel 0 is data and channel 1 is errors, and the first frame on
each channel from the server starts with the port number (2 bytes, little endian).

Why one stream per connection: when a stream drops (API servers and load balancers cut them
after minutes), only that connection closes; ZeroMQ reconnects to the same local port at once,
which opens a fresh stream. So the local ports never change and a ``KernelLink`` using them
keeps working with no help.

A new stream is only joined to its local connection once the pod's side has spoken: ZeroMQ
peers send their greeting at once, so the first data frame says the kernel accepted, and an
error frame says it did not (not listening yet: starting or restarting). Until then the local
client's bytes stay unread in its socket, and a refused stream is retried with back-off; so a
request sent while the kernel is still binding its ports is delivered, not lost.

Idle streams are kept open with WebSocket pings; the sockets have TCP_NODELAY (no Nagle delay on
small kernel messages) and TCP keepalive. Streams take the kubeconfig's proxy like REST calls.
Anyone on this machine can connect to the local ports, as to any local Jupyter kernel; the
kernel's HMAC key is what keeps them from running code.

Threads: one accept loop, one keep-alive loop, and per local connection one serving thread (and
one more per direction while a stream is open). The ``PodPortForward`` owns them all: ``close()``
wakes each one (shutting its sockets) and joins it.

Only the failures of the network are caught (``OSError``: sockets, TLS, time-outs;
``websocket.WebSocketException``: the stream); anything else is a bug and surfaces.
"""
from __future__ import annotations

import selectors
import socket
import threading
import time
import urllib.parse
from typing import Any

import websocket

from ..errors import TransportError
from .podstream import DATA, ERROR, STREAM_ERRORS, Pipe, close_ws, connect_stream, frame, new_stream, one_line

#: seconds ``close()`` waits for all of its threads together
JOIN_TIMEOUT = 5.0


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


class PodPortForward:
    """Forward ``remote_ports`` of one pod to ports on 127.0.0.1 until ``close()``.

    ``configuration`` is a ``kubernetes.client.Configuration`` (host, TLS, credentials; a
    token refresh hook, e.g. for exec plugins, is honoured on every new stream).
    """

    #: seconds between WebSocket pings on each open stream
    keepalive: float = 20.0
    #: longest pause between attempts while streams cannot be opened (pod restarting, API away)
    max_backoff: float = 1.0
    #: how long a local connection waits for the pod's side to accept before it is closed
    connect_timeout: float = 30.0
    #: a pod-side server that has said nothing after this long is taken as connected
    greeting_timeout: float = 2.0

    def __init__(self, configuration: Any, namespace: str, pod: str, remote_ports: list[int],
                 *, keepalive: float | None = None) -> None:
        self.configuration = configuration
        self.namespace, self.pod = namespace, pod
        self.remote_ports = list(remote_ports)
        self.local_ports: dict[int, int] = {}
        self.last_error: str = ""
        self.streams_opened = 0  # how many streams were opened (first ones plus re-established)
        self.closed = False
        if keepalive is not None:
            self.keepalive = keepalive
        self._listeners: dict[socket.socket, int] = {}
        self._pipes: set[Pipe] = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopped = threading.Event()
        self._threads: set[threading.Thread] = set()  # every thread this forward started, until joined
        self._opening: set[Any] = set()  # streams being opened (closed by close() to wake them)

    # -- public --------------------------------------------------------------------------------
    def start(self) -> dict[int, int]:
        """Listen on 127.0.0.1 (one port per remote port) and return ``{remote: local}``."""
        for remote in self.remote_ports:
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.bind(("127.0.0.1", 0))  # loopback only: nobody else on this machine's network
            lsock.listen(16)
            lsock.setblocking(False)
            self._listeners[lsock] = remote
            self.local_ports[remote] = lsock.getsockname()[1]
        self._spawn(self._accept_loop, (), "accept")
        self._spawn(self._keepalive_loop, (), "keepalive")
        return dict(self.local_ports)

    def _spawn(self, target: Any, args: tuple[Any, ...], name: str) -> None:
        """Start a thread owned by this forward (joined by ``close()``)."""
        t = threading.Thread(target=self._run_owned, args=(target, args), name=f"portforward-{self.pod}-{name}",
                             daemon=True)
        with self._lock:
            self._threads.add(t)
        t.start()

    def _run_owned(self, target: Any, args: tuple[Any, ...]) -> None:
        try:
            target(*args)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    @property
    def threads(self) -> int:
        """How many of this forward's threads are alive (0 once ``close()`` has returned)."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def drop_streams(self) -> int:
        """Close every open stream now (as a dropped connection would); returns how many."""
        with self._lock:
            pipes = list(self._pipes)
        for p in pipes:
            p.close()
        return len(pipes)

    @property
    def open_streams(self) -> int:
        with self._lock:
            return len(self._pipes)

    def close(self) -> None:
        """Stop listening, close every stream, and join every thread of this forward."""
        if self.closed:
            return
        self.closed = True
        self._stopped.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        with self._lock:
            opening = list(self._opening)
        for ws in opening:
            close_ws(ws)  # wakes a serving thread blocked in a handshake
        self.drop_streams()
        deadline = time.monotonic() + JOIN_TIMEOUT
        while True:
            with self._lock:
                left = [t for t in self._threads if t is not threading.current_thread()]
            if not left or time.monotonic() >= deadline:
                break
            left[0].join(timeout=max(0.0, deadline - time.monotonic()))
        for lsock in self._listeners:
            lsock.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- streams -----------------------------------------------------------------------------
    def url(self, port: int) -> str:
        """The WebSocket URL of the portforward subresource for one port."""
        host = self.configuration.host.rstrip("/")
        scheme, rest = host.split("://", 1) if "://" in host else ("https", host)
        ws = {"https": "wss", "http": "ws"}.get(scheme, scheme)
        path = (f"/api/v1/namespaces/{urllib.parse.quote(self.namespace)}/pods/"
                f"{urllib.parse.quote(self.pod)}/portforward")
        return f"{ws}://{rest}{path}?ports={int(port)}"

    def _open_stream(self, port: int) -> Any:
        """Open one authenticated WebSocket stream to ``port`` of the pod."""
        url = self.url(port)
        ws = new_stream(url, self.configuration)
        with self._lock:
            if self.closed:
                raise TransportError("the port-forward is closed")
            self._opening.add(ws)
        try:
            connect_stream(ws, url, self.configuration)
        except BaseException:
            self._opened(ws)
            raise
        return ws

    def _opened(self, ws: Any) -> None:
        """``ws`` is past its handshake and greeting (or failed): close() need not wake it."""
        with self._lock:
            self._opening.discard(ws)

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        for lsock in self._listeners:
            sel.register(lsock, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self.closed:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self.closed:
                        return
                    lsock = key.fileobj
                    if not isinstance(lsock, socket.socket):
                        continue
                    try:
                        conn, _ = lsock.accept()
                    except (BlockingIOError, OSError):
                        continue
                    conn.setblocking(True)
                    _tune(conn)
                    self._spawn(self._serve, (conn, self._listeners[lsock]), str(self._listeners[lsock]))
        finally:
            sel.close()

    def _serve(self, conn: socket.socket, remote: int) -> None:
        """Carry one local connection over a stream the pod's side has accepted.

        Refused streams are retried (with back-off, for up to ``connect_timeout``) while the
        local connection waits; then it is closed, so the client reconnects and tries again.
        """
        try:
            ws, first, prefixed = self._accepted_stream(conn, remote)
        except BaseException:
            conn.close()  # nobody else will: the client sees its connection end, not a hang
            raise
        if ws is None:
            conn.close()
            return
        pipe = Pipe(conn, ws, remote, lambda error: self._error(remote, error), first, prefixed)
        with self._lock:
            if self.closed:
                pipe.close()
                return
            self._pipes.add(pipe)
            self.streams_opened += 1
        pipe.run()  # returns once both directions have ended
        with self._lock:
            self._pipes.discard(pipe)

    def _accepted_stream(self, conn: socket.socket, remote: int) -> tuple[Any, bytes, dict[int, bool]]:
        """A stream to ``remote`` that the pod's side accepted, with its first bytes; (None, ...)
        when ``connect_timeout`` passed, the local client left, or the forward was closed."""
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.05
        while True:
            ws = None
            try:
                ws = self._open_stream(remote)
                first, prefixed = self._first_data(ws, remote)
                return ws, first, prefixed
            except (*STREAM_ERRORS, TransportError) as e:
                self.last_error = f"port-forward to {self.pod}:{remote}: {one_line(e)}"
                if ws is not None:
                    close_ws(ws)
            finally:
                if ws is not None:
                    self._opened(ws)
            if self.closed or time.monotonic() + delay > deadline or _peer_gone(conn):
                return None, b"", {}
            if self._stopped.wait(delay):  # close() ends the wait at once
                return None, b"", {}
            # a kernel that is starting listens within a second or two: keep retries close then
            started = deadline - self.connect_timeout
            delay = min(delay * 1.5, 0.2 if time.monotonic() - started < 10 else self.max_backoff)

    def _first_data(self, ws: Any, port: int) -> tuple[bytes, dict[int, bool]]:
        """Read until the pod's side speaks (returns its first bytes) or refuses (raises).

        A server that says nothing within ``greeting_timeout`` is taken as connected (b"").
        """
        prefixed = {DATA: False, ERROR: False}
        ws.settimeout(self.greeting_timeout)
        try:
            while True:
                try:
                    opcode, data = ws.recv_data()
                except websocket.WebSocketTimeoutException:
                    return b"", prefixed
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    raise TransportError("the API server closed the stream")
                if opcode not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT) or not data:
                    continue
                channel, payload = frame(data, prefixed)
                if channel == ERROR and payload:
                    raise TransportError(payload.decode("utf-8", "replace").strip())
                if channel == DATA and payload:
                    return payload, prefixed
        finally:
            ws.settimeout(None)

    def _error(self, port: int, error: str) -> None:
        self.last_error = f"port-forward to {self.pod}:{port}: {error}"

    def _keepalive_loop(self) -> None:
        while not self._stopped.wait(self.keepalive):
            with self._lock:
                pipes = list(self._pipes)
            for p in pipes:
                p.ping()


def _peer_gone(conn: socket.socket) -> bool:
    """Has the local client closed its end (readable with no data)? Never reads real data."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


