"""The SSH transport against the test bed's real sshd: verified host keys, quoting, SFTP modes,
forwards with TCP_NODELAY that come back after the connection drops."""
from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airavata_magic.errors import TransportError
from airavata_magic.transport.ssh import SshConnection, SshTarget

pytestmark = pytest.mark.slurm


@pytest.fixture
def target(slurm_testbed) -> SshTarget:
    tb = slurm_testbed
    return SshTarget(tb.host, tb.port, tb.user, str(tb.identity_file), str(tb.known_hosts))


@pytest.fixture
def conn(target):
    c = SshConnection(target)
    yield c
    c.close()


def test_run_quotes_every_argument(conn, tmp_path):
    marker = f"/tmp/airavata-pwned-{time.time_ns()}"
    nasty = f"'; touch {marker} #$(id) `id` \"q\" \\ *"
    rc, out, err = conn.run(["printf", "[%s]", nasty, "a b"])
    assert (rc, out, err) == (0, f"[{nasty}][a b]", "")
    rc, out, err = conn.run("cat; echo oops >&2; exit 7", stdin=b"in put")
    assert (rc, out, err) == (7, "in put", "oops\n")
    assert not __import__("os").path.exists(marker)


def test_unknown_host_key_is_refused_with_the_command_to_add_it(target, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    c = SshConnection(dataclasses.replace(target, known_hosts=str(empty)))
    with pytest.raises(TransportError) as e:
        c.run(["true"])
    msg = str(e.value)
    assert "not in" in msg and f"ssh-keyscan -p {target.port} {target.host} >> {empty}" in msg
    assert empty.read_text() == ""  # never written by us


def test_changed_host_key_is_refused(target, tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = (tmp_path / "k.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{target.host}]:{target.port} {kind} {blob}\n")
    c = SshConnection(dataclasses.replace(target, known_hosts=str(known)))
    with pytest.raises(TransportError) as e:
        c.run(["true"])
    assert "CHANGED" in str(e.value) and "ssh-keygen -R" in str(e.value)


def test_wrong_identity_is_one_clear_line(target, tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(TransportError) as e:
        SshConnection(dataclasses.replace(target, identity_file=str(key))).run(["true"])
    assert "refused" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(TransportError, match="not found"):
        SshConnection(dataclasses.replace(target, identity_file=str(tmp_path / "missing"))).run(["true"])


def test_proxy_jump_through_the_same_sshd(target):
    c = SshConnection(dataclasses.replace(target, proxy_jump=f"{target.user}@{target.host}:{target.port}"))
    try:
        assert c.run(["echo", "via jump"])[1] == "via jump\n"
    finally:
        c.close()


def test_sftp_write_sets_mode_before_data(conn):
    path = f"{conn.home()}/modes-{time.time_ns()}.txt"
    conn.write_file(path, "secret", mode=0o600)
    assert conn.file_mode(path) == 0o600
    assert conn.read_file(path) == b"secret"
    assert conn.read_file(path, max_bytes=3) == b"ret"
    assert conn.read_file(path + ".missing") is None
    conn.run(["rm", "-f", path])


def test_one_connection_is_shared_by_threads(conn):
    results = []

    def work(i):
        results.append(conn.run(["echo", str(i)])[1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(f"{i}\n" for i in range(8))
    assert conn.connects == 1


@pytest.fixture
def echo_server(slurm_testbed):
    """A TCP echo server on 127.0.0.1 (on the 'remote' host, which is this machine)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")], daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def _echo(port: int, payload: bytes) -> tuple[bytes, int]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += s.recv(65536)
        return got, s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_forward_carries_data_with_nodelay_and_survives_a_dropped_connection(conn, echo_server):
    fwd = conn.forward("127.0.0.1", echo_server)
    try:
        got, _ = _echo(fwd.local_port, b"x" * 200_000)
        assert got == b"x" * 200_000
        assert conn.transport().sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        port = fwd.local_port
        conn.transport().close()  # the link drops (as when a laptop sleeps)
        got, _ = _echo(fwd.local_port, b"after drop")
        assert got == b"after drop" and fwd.local_port == port
        assert conn.connects == 2
    finally:
        fwd.close()
    with pytest.raises(OSError):
        _echo(port, b"closed")


def test_forward_to_a_closed_port_closes_the_local_side(conn):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed_port = s.getsockname()[1]
    s.close()
    fwd = conn.forward("127.0.0.1", closed_port)
    try:
        with socket.create_connection(("127.0.0.1", fwd.local_port), timeout=10) as c:
            c.settimeout(10)
            assert c.recv(10) == b""  # refused remotely -> closed here, no hang
        assert conn.run(["true"])[0] == 0  # and the connection is unharmed
    finally:
        fwd.close()


def test_ssh_agent_is_used_when_no_identity_file(target, tmp_path, monkeypatch):
    """No identity_file: the key comes from a real ssh-agent (started here, stopped by pid)."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": __import__("os").environ["PATH"]}
        subprocess.run(["ssh-add", "-q", target.identity_file], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        c = SshConnection(dataclasses.replace(target, identity_file=None))
        try:
            assert c.run(["echo", "agent"])[1] == "agent\n"
        finally:
            c.close()
    finally:
        agent.terminate()
        agent.wait(10)


def test_forward_close_joins_its_threads(conn, echo_server):
    fwd = conn.forward("127.0.0.1", echo_server)
    with socket.create_connection(("127.0.0.1", fwd.local_port), timeout=10) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
        assert fwd.threads_alive == 3  # the accept loop and the two pumps of this connection
        fwd.close()
        assert fwd.threads_alive == 0
        s.settimeout(10)
        assert s.recv(4) == b""  # the forwarded connection was closed too


def test_the_pool_is_closed_with_its_forwards_at_unload(target, echo_server, tmp_path):
    """Unloading the extension (``RuntimeManager.close(transports=True)``) and process exit
    (``atexit``) close every pooled SSH connection; the next use makes a fresh one."""
    from airavata_magic.manager import RuntimeManager
    from airavata_magic.runtime import RuntimeStore
    from airavata_magic.transport import ssh

    pooled = ssh.connection_for(target)
    assert pooled.run(["true"])[0] == 0
    transport = pooled.transport()
    fwd = pooled.forward("127.0.0.1", echo_server)
    assert _echo(fwd.local_port, b"x")[0] == b"x"
    manager = RuntimeManager(RuntimeStore(tmp_path / "home"))
    manager.close(transports=True)
    assert not transport.is_active() and fwd.threads_alive == 0
    with pytest.raises(OSError):
        _echo(fwd.local_port, b"closed")
    fresh = ssh.connection_for(target)
    assert fresh is not pooled and fresh.run(["true"])[0] == 0
    ssh.close_all()


def test_pooled_connections_are_closed_at_process_exit(target):
    # atexit runs handlers last-registered first: this check, registered before the pool's
    # own handler, runs after it.
    script = (
        "import atexit\n"
        "from airavata_magic.transport import ssh\n"
        "seen = {}\n"
        "atexit.register(lambda: print('closed' if not seen['t'].is_active() else 'open', flush=True))\n"
        f"target = ssh.SshTarget({target.host!r}, {target.port}, {target.user!r}, {target.identity_file!r}, "
        f"{target.known_hosts!r})\n"
        "c = ssh.connection_for(target)\n"
        "assert c.run(['true'])[0] == 0\n"
        "seen['t'] = c.transport()\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=str(root))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "closed"


def test_stream_passes_on_every_byte_before_the_exit_status(conn):
    """The exit status can arrive before the last output; nothing may be dropped (30 tries)."""
    for _ in range(30):
        out, err = bytearray(), bytearray()
        code = conn.stream("head -c 1000000 /dev/zero | cat; head -c 300000 /dev/zero >&2; exit 3",
                           out.extend, err.extend)
        assert (len(out), len(err), code) == (1000000, 300000, 3)
