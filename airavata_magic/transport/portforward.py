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
"""
from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any

from ..errors import TransportError

SUBPROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1


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
        self.info: dict[str, Any] = {}  # the local connection info, set by the backend
        self.last_error: str = ""
        self.streams_opened = 0  # how many streams were opened (first ones plus re-established)
        self.closed = False
        if keepalive is not None:
            self.keepalive = keepalive
        self._listeners: dict[socket.socket, int] = {}
        self._pipes: set[_Pipe] = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

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
        for target, name in ((self._accept_loop, "accept"), (self._keepalive_loop, "keepalive")):
            t = threading.Thread(target=target, name=f"portforward-{self.pod}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return dict(self.local_ports)

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
        """Stop listening and close every stream."""
        if self.closed:
            return
        self.closed = True
        self._stopped.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self.drop_streams()
        for t in self._threads:
            t.join(timeout=2)
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
        import websocket

        cfg = self.configuration
        headers = [f"Sec-WebSocket-Protocol: {SUBPROTOCOL}"]
        auth = cfg.auth_settings().get("BearerToken")  # calls the token refresh hook if any
        if auth and auth.get("value"):
            headers.append(f"Authorization: {auth['value']}")
        sslopt: dict[str, Any] = {}
        url = self.url(port)
        if url.startswith("wss://"):
            if cfg.verify_ssl:
                sslopt = {"cert_reqs": ssl.CERT_REQUIRED}
                if cfg.ssl_ca_cert:
                    sslopt["ca_certs"] = cfg.ssl_ca_cert
                if cfg.assert_hostname is not None:
                    sslopt["check_hostname"] = cfg.assert_hostname
            else:
                sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
            if cfg.cert_file:
                sslopt["certfile"] = cfg.cert_file
            if cfg.key_file:
                sslopt["keyfile"] = cfg.key_file
            if getattr(cfg, "tls_server_name", None):
                sslopt["server_hostname"] = cfg.tls_server_name
        ws = websocket.WebSocket(sslopt=sslopt, skip_utf8_validation=True,
                                 sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
                                          (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)))
        ws.settimeout(15)
        try:
            ws.connect(url, header=headers, subprotocols=[SUBPROTOCOL], **_proxy_options(cfg))
        except Exception:
            ws.close()
            raise
        if getattr(ws, "subprotocol", None) not in (None, SUBPROTOCOL):
            ws.close()
            raise TransportError(f"the API server answered with protocol {ws.subprotocol!r}, not {SUBPROTOCOL}")
        ws.settimeout(None)
        return ws

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
                    threading.Thread(target=self._serve, args=(conn, self._listeners[lsock]),
                                     name=f"portforward-{self.pod}-{self._listeners[lsock]}", daemon=True).start()
        finally:
            sel.close()

    def _serve(self, conn: socket.socket, remote: int) -> None:
        """Carry one local connection over a stream the pod's side has accepted.

        Refused streams are retried (with back-off, for up to ``connect_timeout``) while the
        local connection waits; then it is closed, so the client reconnects and tries again.
        """
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.05
        while True:
            ws = None
            try:
                ws = self._open_stream(remote)
                first, prefixed = self._first_data(ws, remote)
                break
            except Exception as e:
                self.last_error = f"port-forward to {self.pod}:{remote}: {_one_line(e)}"
                if ws is not None:
                    _close_ws(ws)
            if self.closed or time.monotonic() + delay > deadline or _peer_gone(conn):
                conn.close()
                return
            time.sleep(delay)
            # a kernel that is starting listens within a second or two: keep retries close then
            started = deadline - self.connect_timeout
            delay = min(delay * 1.5, 0.2 if time.monotonic() - started < 10 else self.max_backoff)
        pipe = _Pipe(conn, ws, remote, self, first, prefixed)
        with self._lock:
            if self.closed:
                pipe.close()
                return
            self._pipes.add(pipe)
            self.streams_opened += 1
        pipe.run()
        with self._lock:
            self._pipes.discard(pipe)

    def _first_data(self, ws: Any, port: int) -> tuple[bytes, dict[int, bool]]:
        """Read until the pod's side speaks (returns its first bytes) or refuses (raises).

        A server that says nothing within ``greeting_timeout`` is taken as connected (b"").
        """
        import websocket

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
                channel, payload = _frame(data, prefixed)
                if channel == ERROR and payload:
                    raise TransportError(payload.decode("utf-8", "replace").strip())
                if channel == DATA and payload:
                    return payload, prefixed
        finally:
            ws.settimeout(None)

    def _keepalive_loop(self) -> None:
        while not self._stopped.wait(self.keepalive):
            with self._lock:
                pipes = list(self._pipes)
            for p in pipes:
                p.ping()


def _proxy_options(cfg: Any) -> dict[str, Any]:
    """The kubeconfig's ``proxy-url`` (and no_proxy, proxy auth) as websocket-client options,
    so streams take the same way to the API server as the client's REST calls."""
    opts: dict[str, Any] = {}
    proxy = getattr(cfg, "proxy", None)
    if not proxy:
        return opts
    url = urllib.parse.urlparse(proxy)
    opts.update(http_proxy_host=url.hostname, http_proxy_port=url.port or 80, proxy_type="http")
    if url.username:
        opts["http_proxy_auth"] = (urllib.parse.unquote(url.username), urllib.parse.unquote(url.password or ""))
    for key, value in (getattr(cfg, "proxy_headers", None) or {}).items():
        if key.lower() == "proxy-authorization" and value.startswith("Basic "):
            import base64

            user, _, password = base64.b64decode(value.split()[1]).decode().partition(":")
            opts["http_proxy_auth"] = (user, password)
    if getattr(cfg, "no_proxy", None):
        opts["http_no_proxy"] = [h.strip() for h in cfg.no_proxy.split(",") if h.strip()]
    return opts


def _frame(data: bytes | str, prefixed: dict[int, bool]) -> tuple[int, bytes]:
    """Split a frame into channel and payload, dropping the port prefix of each channel's first."""
    if isinstance(data, str):
        data = data.encode()
    channel, payload = data[0], data[1:]
    if channel in prefixed and not prefixed[channel]:
        prefixed[channel] = True  # the server's first frame on each channel names the port
        payload = payload[2:]
    return channel, payload


def _peer_gone(conn: socket.socket) -> bool:
    """Has the local client closed its end (readable with no data)? Never reads real data."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _close_ws(ws: Any) -> None:
    try:
        if ws.sock:
            ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        ws.close()
    except Exception:
        pass


class _Pipe:
    """One local TCP connection joined to one WebSocket stream: a thread per direction."""

    def __init__(self, conn: socket.socket, ws: Any, port: int, owner: PodPortForward,
                 first: bytes = b"", prefixed: dict[int, bool] | None = None) -> None:
        self.conn, self.ws, self.port, self.owner = conn, ws, port, owner
        self.first = first
        self.prefixed = prefixed if prefixed is not None else {DATA: False, ERROR: False}
        self._closed = threading.Event()

    def run(self) -> None:
        up = threading.Thread(target=self._local_to_stream, name=f"portforward-up-{self.port}", daemon=True)
        up.start()
        self._stream_to_local()
        self.close()
        up.join(timeout=2)

    def _stream_to_local(self) -> None:
        import websocket

        try:
            if self.first:
                self.conn.sendall(self.first)
            while not self._closed.is_set():
                opcode, data = self.ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return
                if opcode not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT) or not data:
                    continue
                channel, payload = _frame(data, self.prefixed)
                if not payload:
                    continue
                if channel == DATA:
                    self.conn.sendall(payload)
                elif channel == ERROR:
                    self.owner.last_error = (f"port-forward to {self.owner.pod}:{self.port}: "
                                             f"{payload.decode('utf-8', 'replace').strip()}")
                    return
        except Exception:
            return  # stream or socket closed: the local client reconnects

    def _local_to_stream(self) -> None:
        try:
            while not self._closed.is_set():
                data = self.conn.recv(65536)
                if not data:
                    break
                self.ws.send_binary(b"\x00" + data)
        except Exception:
            pass
        finally:
            self.close()

    def ping(self) -> None:
        try:
            self.ws.ping()
        except Exception:
            self.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for f in (lambda: self.conn.shutdown(socket.SHUT_RDWR), self.conn.close):
            try:
                f()
            except Exception:
                pass
        _close_ws(self.ws)


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return msg[0][:300] if msg else type(e).__name__
