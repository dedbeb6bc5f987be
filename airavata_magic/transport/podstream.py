"""One WebSocket stream to one port of a pod (``v4.channel.k8s.io``), and a local TCP
connection joined to it. Used by ``transport.portforward.PodPortForward``.

Frames carry a channel byte: for the one port of a stream, channel 0 is data and channel 1 is
errors, and the first frame on each channel from the server starts with the port number (2 bytes,
little endian). Only the failures of the network are caught (``STREAM_ERRORS``).
"""
from __future__ import annotations

import base64
import socket
import ssl
import threading
import urllib.parse
from typing import Any, Callable

import websocket

from ..errors import TransportError

SUBPROTOCOL = "v4.channel.k8s.io"
DATA, ERROR = 0, 1
#: what a stream or a socket raises when the other side, the network or TLS fails
STREAM_ERRORS = (OSError, websocket.WebSocketException)
#: seconds to open a stream (TCP, TLS, the upgrade)
OPEN_TIMEOUT = 15.0


def new_stream(url: str, cfg: Any) -> Any:
    """An unconnected stream for ``url`` with the TLS settings of ``cfg`` (a
    ``kubernetes.client.Configuration``): the server certificate is verified unless the
    kubeconfig says otherwise. ``connect_stream`` connects it."""
    sslopt: dict[str, Any] = {}
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
    ws.settimeout(OPEN_TIMEOUT)
    return ws


def connect_stream(ws: Any, url: str, cfg: Any) -> None:
    """Connect ``ws`` with the credentials and proxy of ``cfg``; closes it on failure."""
    headers = [f"Sec-WebSocket-Protocol: {SUBPROTOCOL}"]
    auth = cfg.auth_settings().get("BearerToken")  # calls the token refresh hook if any
    if auth and auth.get("value"):
        headers.append(f"Authorization: {auth['value']}")
    try:
        ws.connect(url, header=headers, subprotocols=[SUBPROTOCOL], **proxy_options(cfg))
    except STREAM_ERRORS:
        close_ws(ws)
        raise
    if getattr(ws, "subprotocol", None) not in (None, SUBPROTOCOL):
        close_ws(ws)
        raise TransportError(f"the API server answered with protocol {ws.subprotocol!r}, not {SUBPROTOCOL}")
    ws.settimeout(None)


def proxy_options(cfg: Any) -> dict[str, Any]:
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
            user, _, password = base64.b64decode(value.split()[1]).decode().partition(":")
            opts["http_proxy_auth"] = (user, password)
    if getattr(cfg, "no_proxy", None):
        opts["http_no_proxy"] = [h.strip() for h in cfg.no_proxy.split(",") if h.strip()]
    return opts


def frame(data: bytes | str, prefixed: dict[int, bool]) -> tuple[int, bytes]:
    """Split a frame into channel and payload, dropping the port prefix of each channel's first."""
    if isinstance(data, str):
        data = data.encode()
    channel, payload = data[0], data[1:]
    if channel in prefixed and not prefixed[channel]:
        prefixed[channel] = True  # the server's first frame on each channel names the port
        payload = payload[2:]
    return channel, payload


def close_ws(ws: Any) -> None:
    """Close a stream now, waking any thread blocked reading it."""
    try:
        if ws.sock:
            ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # not connected (yet, or any more)
    try:
        ws.close()
    except STREAM_ERRORS:
        pass  # the close frame could not be sent: the socket is gone anyway


class Pipe:
    """One local TCP connection joined to one WebSocket stream: a thread per direction."""

    def __init__(self, conn: socket.socket, ws: Any, port: int, on_error: Callable[[str], None],
                 first: bytes = b"", prefixed: dict[int, bool] | None = None) -> None:
        """``on_error(text)`` is told what the pod's side reported on the error channel."""
        self.conn, self.ws, self.port, self.on_error = conn, ws, port, on_error
        self.first = first
        self.prefixed = prefixed if prefixed is not None else {DATA: False, ERROR: False}
        self._closed = threading.Event()

    def run(self) -> None:
        """Carry data both ways until either side ends; joins its second thread before returning."""
        up = threading.Thread(target=self._local_to_stream, name=f"portforward-up-{self.port}", daemon=True)
        up.start()
        try:
            self._stream_to_local()
        finally:
            self.close()
            up.join()  # close() shut both sockets: the other direction ends at once

    def _stream_to_local(self) -> None:
        try:
            if self.first:
                self.conn.sendall(self.first)
            while not self._closed.is_set():
                opcode, data = self.ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    return
                if opcode not in (websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_TEXT) or not data:
                    continue
                channel, payload = frame(data, self.prefixed)
                if not payload:
                    continue
                if channel == DATA:
                    self.conn.sendall(payload)
                elif channel == ERROR:
                    self.on_error(payload.decode("utf-8", "replace").strip())
                    return
        except STREAM_ERRORS:
            return  # stream or socket closed: the local client reconnects

    def _local_to_stream(self) -> None:
        try:
            while not self._closed.is_set():
                data = self.conn.recv(65536)
                if not data:
                    break
                self.ws.send_binary(b"\x00" + data)
        except STREAM_ERRORS:
            pass  # stream or socket closed: the other direction notices too
        finally:
            self.close()

    def ping(self) -> None:
        """Keep an idle stream open (API servers and load balancers cut silent ones)."""
        try:
            self.ws.ping()
        except STREAM_ERRORS:
            self.close()

    def close(self) -> None:
        """Close both ends now; both directions' threads then end."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the local client already went away
        self.conn.close()
        close_ws(self.ws)


def one_line(e: BaseException) -> str:
    """The first line of an error, for ``last_error``."""
    msg = str(e).strip().splitlines()
    return msg[0][:300] if msg else type(e).__name__
