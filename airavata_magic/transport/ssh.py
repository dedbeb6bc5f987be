"""SSH on paramiko: one verified connection per resource, remote commands, SFTP, and port forwards.

- Host keys are always verified against ``known_hosts`` (``RejectPolicy``); an unknown or changed
  key is one ``TransportError`` line that says how to add or fix it.
- ``connection_for(target)`` returns the one ``SshConnection`` shared by everything that talks to
  that host as that user (backends, forwards, the compute command). It is thread-safe and
  reconnects by itself when the link drops.
- ``Forward`` (``transport.forward``): a local listener on 127.0.0.1 whose connections become
  direct-tcpip channels. The listener outlives the SSH connection: after a drop, the next
  connection made to it (ZeroMQ reconnects on its own) goes through a fresh SSH connection.
- The pool is closed at process exit (``atexit``) and by ``close_all()`` (extension unload).
- paramiko does not set TCP_NODELAY; we give ``connect(sock=...)`` a socket that has it, and set
  it on the local sockets too. Without it each kernel round trip pays Nagle + delayed-ACK stalls.
"""
from __future__ import annotations

import atexit
import logging
import os
import socket
import stat
import threading
import weakref
from pathlib import Path
from typing import Callable, Sequence

import paramiko

from ..errors import TransportError
from .forward import Forward
from .target import SshTarget, parse_jump, quote_argv

# paramiko logs refused forwards and dropped links at ERROR; with no logging configured Python
# would print them into the notebook. We report those conditions ourselves, as one line each.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

KEEPALIVE_S = 15
CONNECT_TIMEOUT_S = 15


def _host_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _nodelay_socket(host: str, port: int) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    except OSError as e:
        raise TransportError(f"cannot reach SSH server {host}:{port}: {e.strerror or e}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


class SshConnection:
    """One SSH connection to a target, made on first use and remade after a drop. Thread-safe."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self._lock = threading.RLock()
        self._client: paramiko.SSHClient | None = None
        self._jump: SshConnection | None = None
        self._home: str | None = None
        self._forwards: weakref.WeakSet[Forward] = weakref.WeakSet()
        self._sftp_lock = threading.Lock()
        self._shared_sftp: paramiko.SFTPClient | None = None
        self.connects = 0  # how many times a connection was made (tests and benchmarks read it)

    # -- the connection ------------------------------------------------------------------
    def transport(self) -> paramiko.Transport:
        """The live transport, connecting (again) if needed."""
        with self._lock:
            client = self._client
            if client is not None:
                t = client.get_transport()
                if t is not None and t.is_active():
                    return t
                self._drop(client)
            client = self._client = self._connect()
            self.connects += 1
            t = client.get_transport()
            if t is None:
                raise TransportError(f"SSH to {self.target.label}: the connection closed right after login")
            threading.Thread(target=self._watch, args=(client, t), name=f"ssh-watch:{self.target.label}",
                             daemon=True).start()
            return t

    def _watch(self, client: paramiko.SSHClient, t: paramiko.Transport) -> None:
        """Notice a dropped link at once (the transport's thread ends) and reset the forwards."""
        t.join()
        with self._lock:
            if self._client is client:
                self._drop(client)

    def _connect(self) -> paramiko.SSHClient:
        tg = self.target
        client = paramiko.SSHClient()
        known = Path(os.path.expanduser(tg.known_hosts))
        if known.is_file():
            try:
                client.load_system_host_keys(str(known))  # read only; never written back
            except (OSError, paramiko.SSHException) as e:
                raise TransportError(f"cannot read known_hosts {known}: {e}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        jump = tg.jump_target()
        if jump is not None:
            self._jump = self._jump or connection_for(jump)
            try:
                sock = self._jump.transport().open_channel("direct-tcpip", (tg.host, tg.port), ("127.0.0.1", 0))
            except paramiko.ChannelException as e:
                raise TransportError(f"the jump host {jump.label} cannot reach {tg.host}:{tg.port}: {e}") from None
        else:
            sock = _nodelay_socket(tg.host, tg.port)
        key_file = os.path.expanduser(tg.identity_file) if tg.identity_file else None
        if key_file and not os.path.isfile(key_file):
            raise TransportError(f"identity_file {key_file} not found; fix identity_file in the profile")
        entry = _host_entry(tg.host, tg.port)
        try:
            client.connect(
                tg.host, port=tg.port, username=tg.user, key_filename=key_file, sock=sock,
                allow_agent=key_file is None, look_for_keys=False, timeout=CONNECT_TIMEOUT_S,
                banner_timeout=CONNECT_TIMEOUT_S, auth_timeout=CONNECT_TIMEOUT_S,
            )
        except paramiko.BadHostKeyException:
            raise TransportError(
                f"the host key of {entry} has CHANGED (not the one in {known}); if the server was "
                f"reinstalled, remove the old entry with `ssh-keygen -R '{entry}' -f {known}` and add the new "
                f"one with `ssh-keyscan -p {tg.port} {tg.host} >> {known}` after checking its fingerprint"
            ) from None
        except paramiko.PasswordRequiredException:
            raise TransportError(f"identity_file {key_file} is encrypted; load it into ssh-agent and remove identity_file") from None
        except paramiko.AuthenticationException:
            how = f"identity_file {key_file}" if key_file else "the keys in your SSH agent"
            raise TransportError(f"{tg.label} refused {how}; check user and identity_file in the profile") from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise TransportError(
                    f"the host key of {entry} is not in {known}; if you trust the host, add it with "
                    f"`ssh-keyscan -p {tg.port} {tg.host} >> {known}` (or set known_hosts in the profile)"
                ) from None
            raise TransportError(f"SSH to {tg.label} failed: {e}") from None
        except OSError as e:
            raise TransportError(f"SSH to {tg.label} failed: {e.strerror or e}") from None
        t = client.get_transport()
        if t is None:
            raise TransportError(f"SSH to {tg.label}: the connection closed right after login")
        t.set_keepalive(KEEPALIVE_S)
        return client

    def close(self) -> None:
        """Drop the connection (forwards made from it reconnect on their next use)."""
        with self._lock:
            if self._client is not None:
                self._drop(self._client)

    def shutdown(self) -> None:
        """Close the forwards made from this connection (joining their threads), then the
        connection itself. Used when the pool is closed."""
        for fwd in list(self._forwards):
            fwd.close()
        self.close()
        if self._jump is not None:
            self._jump.shutdown()

    def _drop(self, client: paramiko.SSHClient) -> None:
        # Close the forwarded connections now, before anyone writes into them: their peers
        # (ZeroMQ) then queue messages and reconnect, instead of losing them in a dead stream.
        client.close()
        self._client = None
        self._shared_sftp = None
        for fwd in list(self._forwards):
            fwd.drop_connections()

    # -- commands ------------------------------------------------------------------------
    def _exec(self, command: str) -> paramiko.Channel:
        for attempt in (0, 1):
            t = self.transport()
            try:
                ch = t.open_session(timeout=CONNECT_TIMEOUT_S)
                ch.exec_command(command)
                return ch
            except (paramiko.SSHException, EOFError, OSError) as e:
                if attempt:  # the connection died between the check and the use: once more
                    raise TransportError(f"SSH to {self.target.label}: cannot run a command: {e}") from None
                self.close()
        raise AssertionError("unreachable")

    def run(self, command: str | Sequence[str], stdin: bytes | str | None = None, timeout: float = 60) -> tuple[int, str, str]:
        """Run a command (an argv, quoted here, or a string already quoted) -> (rc, stdout, stderr)."""
        if not isinstance(command, str):
            command = quote_argv(command)
        ch = self._exec(command)
        ch.settimeout(timeout)
        err = bytearray()

        def read_stderr() -> None:  # a thread, so a chatty stderr cannot fill the window and stall
            try:
                while chunk := ch.recv_stderr(65536):
                    err.extend(chunk)
            except (OSError, EOFError, paramiko.SSHException):
                pass

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        out = bytearray()
        try:
            if stdin is not None:
                try:
                    ch.sendall(stdin.encode() if isinstance(stdin, str) else stdin)
                except OSError:
                    pass  # the command ended without reading all its input: its exit code says how it went
            ch.shutdown_write()
            while chunk := ch.recv(65536):
                out.extend(chunk)
            reader.join(timeout)
            if not ch.status_event.wait(timeout):
                raise TransportError(f"{self.target.label}: command did not finish in {timeout:.0f} s")
            rc = ch.recv_exit_status()
            if rc == -1:
                raise TransportError(f"{self.target.label}: connection lost while a command ran")
        except socket.timeout:
            raise TransportError(f"{self.target.label}: command did not finish in {timeout:.0f} s") from None
        finally:
            ch.close()
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def stream(self, command: str, on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None]) -> int:
        """Run a command, passing its output on as it comes; returns its exit code."""
        ch = self._exec(command)
        try:
            ch.shutdown_write()
            while True:
                got = False
                if ch.recv_ready():
                    on_stdout(ch.recv(65536))
                    got = True
                if ch.recv_stderr_ready():
                    on_stderr(ch.recv_stderr(65536))
                    got = True
                if got:
                    continue
                # The exit status can arrive before the last output: only EOF (sent after the last
                # byte) or a closed channel with nothing left to read says the output is complete.
                if ch.exit_status_ready() and (ch.eof_received or ch.closed):
                    # what arrived between the reads above and EOF is in the buffers now
                    while ch.recv_ready():
                        on_stdout(ch.recv(65536))
                    while ch.recv_stderr_ready():
                        on_stderr(ch.recv_stderr(65536))
                    break
                if ch.closed:
                    raise TransportError(f"{self.target.label}: connection lost while a command ran")
                ch.status_event.wait(0.02)
            return ch.recv_exit_status()
        finally:
            ch.close()

    # -- files ---------------------------------------------------------------------------
    def sftp(self) -> paramiko.SFTPClient:
        """A fresh SFTP client on the shared connection (close it when done)."""
        try:
            return self.transport().open_sftp_client()
        except (paramiko.SSHException, EOFError, OSError):
            self.close()
            return self.transport().open_sftp_client()

    def home(self) -> str:
        """The remote home directory (absolute), to expand ``~`` in profile paths."""
        if self._home is None:
            with self.sftp() as s:
                self._home = s.normalize(".")
        return self._home

    def read_file(self, path: str, max_bytes: int | None = None) -> bytes | None:
        """A remote file's bytes (the last ``max_bytes`` if given), or None when it does not exist.

        Small reads (connection files, polled while a kernel starts) share one SFTP session
        instead of opening one per read."""
        for attempt in (0, 1):
            with self._sftp_lock:
                try:
                    if self._shared_sftp is None:
                        self._shared_sftp = self.sftp()
                    with self._shared_sftp.open(path, "rb") as f:
                        size = f.stat().st_size or 0
                        if max_bytes is not None and size > max_bytes:
                            f.seek(size - max_bytes)
                        elif size > 1 << 20:
                            f.prefetch(size)  # large files: pipelined reads (x30 on big files)
                        return f.read()
                except FileNotFoundError:
                    return None
                except (EOFError, paramiko.SSHException, OSError) as e:
                    self._shared_sftp = None  # a dropped link: one fresh session, then give up
                    if attempt or isinstance(e, PermissionError):
                        raise TransportError(f"{self.target.label}: cannot read {path}: {e}") from None
        raise AssertionError("unreachable")

    def write_file(self, path: str, data: bytes | str, mode: int = 0o600) -> None:
        """Write a remote file with ``mode`` (the mode is set before any byte is written)."""
        if isinstance(data, str):
            data = data.encode()
        with self.sftp() as s:
            try:
                with s.open(path, "wb") as f:
                    f.chmod(mode)
                    f.write(data)
            except OSError as e:
                raise TransportError(f"{self.target.label}: cannot write {path}: {e}") from None

    def file_mode(self, path: str) -> int | None:
        """Permission bits of a remote path, or None if it does not exist."""
        with self.sftp() as s:
            try:
                return stat.S_IMODE(s.stat(path).st_mode or 0)
            except FileNotFoundError:
                return None

    # -- forwards ------------------------------------------------------------------------
    def open_channel(self, host: str, port: int) -> paramiko.Channel:
        """A direct-tcpip channel to (host, port) as seen from the SSH server, reconnecting once."""
        for attempt in (0, 1):
            try:
                return self.transport().open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT_S)
            except paramiko.ChannelException as e:
                raise TransportError(f"{self.target.label} cannot reach {host}:{port}: {e.text or e}") from None
            except (paramiko.SSHException, EOFError, OSError) as e:
                if attempt:
                    raise TransportError(f"forward to {host}:{port} via {self.target.label} failed: {e}") from None
                self.close()
        raise AssertionError("unreachable")

    def forward(self, remote_host: str, remote_port: int) -> "Forward":
        """Listen on 127.0.0.1:<free port> and carry each connection to (remote_host, remote_port)."""
        fwd = Forward(self, remote_host, remote_port)
        self._forwards.add(fwd)
        return fwd


# -- the pool: one connection per target ------------------------------------------------------
_pool: dict[SshTarget, SshConnection] = {}
_pool_lock = threading.Lock()


_atexit_registered = False


def connection_for(target: SshTarget) -> SshConnection:
    """The shared connection to ``target`` (created lazily; connects on first use)."""
    global _atexit_registered
    with _pool_lock:
        conn = _pool.get(target)
        if conn is None:
            conn = _pool[target] = SshConnection(target)
        if not _atexit_registered:
            atexit.register(close_all)
            _atexit_registered = True
        return conn


def close_all() -> None:
    """Close every pooled connection and its forwards (extension unload, process exit).

    Later ``connection_for`` calls make fresh connections."""
    with _pool_lock:
        conns = list(_pool.values())
        _pool.clear()
    for conn in conns:
        conn.shutdown()


__all__ = ["Forward", "SshConnection", "SshTarget", "close_all", "connection_for", "parse_jump", "quote_argv"]
