"""``Forward``: a local port whose connections are tunnelled through an ``SshConnection``.

Each forwarded connection is pumped by two blocking threads. ``select()`` on
``Channel.fileno()`` was seen to kill whole connections during teardown (TESTBED.md). The
forward owns its threads: ``close()`` stops them and joins them.
"""
from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING

import paramiko

from ..errors import TransportError

if TYPE_CHECKING:
    from .ssh import SshConnection

JOIN_TIMEOUT_S = 2.0  # a pump blocked in a dead peer's send gives up with its socket; never hang close()


class Forward:
    """A local port whose connections are tunnelled to (host, port) through an ``SshConnection``.

    The listening port stays the same for the forward's life, across SSH reconnects.
    """

    def __init__(self, conn: SshConnection, remote_host: str, remote_port: int) -> None:
        self.conn, self.remote = conn, (remote_host, remote_port)
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))  # loopback only: nobody else on this machine's network
        self._server.listen(16)
        self.local_port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._pairs: set[tuple[socket.socket, paramiko.Channel]] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []  # accept loop + live pumps, joined by close()
        self._start(self._accept_loop, f"forward:{self.local_port}")

    def _start(self, target, name: str, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            try:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                chan = self.conn.open_channel(*self.remote)
            except (TransportError, OSError):
                client.close()  # the peer (ZeroMQ) retries; we try again on its next connect
                continue
            with self._lock:
                if self._closed.is_set():
                    _close_pair(client, chan)
                    return
                self._pairs.add((client, chan))
            self._start(self._pump, f"forward:{self.local_port}:out", client, chan, True)
            self._start(self._pump, f"forward:{self.local_port}:in", client, chan, False)

    def _pump(self, sock: socket.socket, chan: paramiko.Channel, outbound: bool) -> None:
        src_recv = sock.recv if outbound else chan.recv
        dst_send = chan.sendall if outbound else sock.sendall
        try:
            while True:
                data = src_recv(65536)
                if not data:
                    break
                dst_send(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            # Either side ending ends both: closing is idempotent, the other pump then returns.
            with self._lock:
                self._pairs.discard((sock, chan))
            _close_pair(sock, chan)

    @property
    def active_connections(self) -> int:
        """How many connections this forward carries now (0 right after a drop, until the peer reconnects)."""
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        """Stop listening, close every forwarded connection and join the forward's threads."""
        self._closed.set()
        # shutdown() wakes the thread blocked in accept(); close() alone leaves the port listening.
        for closer in (lambda: self._server.shutdown(socket.SHUT_RDWR), self._server.close):
            try:
                closer()
            except OSError:
                pass
        self.drop_connections()
        with self._lock:
            threads = list(self._threads)
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join(JOIN_TIMEOUT_S)

    @property
    def threads_alive(self) -> int:
        """How many of this forward's threads still run (0 after ``close()``)."""
        with self._lock:
            return sum(t.is_alive() for t in self._threads)

    def drop_connections(self) -> None:
        """Close the forwarded connections (the listener stays: peers reconnect to it)."""
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for sock, chan in pairs:
            _close_pair(sock, chan)


def _close_pair(sock: socket.socket, chan: paramiko.Channel) -> None:
    # shutdown() wakes a thread blocked in sock.recv(); close() alone does not on Linux.
    for closer in (chan.close, lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            closer()
        except (OSError, EOFError, paramiko.SSHException):
            pass
