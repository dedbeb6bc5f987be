"""The WebSocket port-forward (``v4.channel.k8s.io``) on its own, against the Kubernetes API
simulator (not a cluster): keepalives, re-established streams, errors, verified TLS."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from airavata_magic.backends.kubernetes import KERNEL_PORTS
from airavata_magic.transport.portforward import PodPortForward

from jupyter_client import BlockingKernelClient

from .conftest import KERNEL_IMAGE, runtime, started, submit
from .simulator import Simulator
from .test_backend import kernel, run


@pytest.fixture
def idle_sim(tmp_path: Path):
    """A simulator that cuts port-forward streams idle for 0.5 s."""
    import sys

    s = Simulator(tmp_path / "idle", {KERNEL_IMAGE: str(Path(sys.executable).parent)}, stream_idle_timeout=0.5).start()
    yield s
    s.stop()


def _running_pod(make_backend, sim: Simulator):
    b = make_backend({"kubeconfig": str(sim.kubeconfig), "context": "sim", "image": KERNEL_IMAGE})
    rt = runtime("pf")
    submit(b, rt)
    started(b, rt)
    b.connection(rt)  # reads the key; the tests below open their own forwards
    return b, rt


def _info(b, rt, fwd: PodPortForward) -> dict:
    local = fwd.start()
    info = b.connection(rt)  # the key; the ports are replaced by this forward's
    info.update({k: local[p] for k, p in KERNEL_PORTS.items()})
    return info


@pytest.mark.parametrize("keepalive, kept", [(0.1, True), (60.0, False)])
def test_keepalive_pings_keep_idle_streams_open(idle_sim, make_backend, keepalive, kept):
    b, rt = _running_pod(make_backend, idle_sim)
    fwd = PodPortForward(b.api.configuration, "research", rt.job_id, list(KERNEL_PORTS.values()), keepalive=keepalive)
    try:
        with kernel(_info(b, rt, fwd)) as kc:
            if kept:  # unpinged streams are cut every 0.5 s: a cell's output may be lost in a cut
                assert run(kc, "print('one')") == "one\n"
            opened = fwd.streams_opened
            time.sleep(1.5)  # idle, three times the simulator's idle limit
            if kept:  # pinged: never cut, and the kernel is there
                assert fwd.streams_opened == opened and idle_sim.pings > 0
                assert run(kc, "print('two')") == "two\n"
            else:  # not pinged: cut again and again (and re-established each time by itself),
                # so a request may well be lost in a cut: the reason for the pings
                assert fwd.streams_opened > opened and idle_sim.pings == 0
    finally:
        fwd.close()
    local_ports = set(fwd.local_ports.values())
    assert all(_refused(p) for p in local_ports)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_a_closed_pod_port_is_reported_and_the_connection_closed(sim, make_backend):
    b, rt = _running_pod(make_backend, sim)
    fwd = PodPortForward(b.api.configuration, "research", rt.job_id, [9])
    fwd.connect_timeout = 1.0  # how long a connection waits for the port to be listened on
    local = fwd.start()[9]
    try:
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", local), timeout=5) as s:
            s.settimeout(5)
            assert s.recv(10) == b""  # closed by the forward once it gave up, not hung
        assert 0.5 < time.monotonic() - t0 < 3
        assert "connect: connection refused" in fwd.last_error and f"{rt.job_id}:9" in fwd.last_error
        assert sum(1 for _, pod, port, ev in sim.stream_log if port == 9 and ev == "open") >= 3  # retried
    finally:
        fwd.close()


def test_the_api_server_certificate_is_verified(sim, make_backend, tmp_path):
    b, rt = _running_pod(make_backend, sim)
    other = Simulator(tmp_path / "other", {}).start()  # another server, another certificate
    try:
        # a kubeconfig for this server that trusts the other server's certificate only
        wrong = tmp_path / "wrong-ca-kubeconfig"
        wrong.write_text(other.kubeconfig.read_text().replace(other.url, sim.url).replace(other.token, sim.token))
        impostor = make_backend({"kubeconfig": str(wrong), "context": "sim", "image": KERNEL_IMAGE})
        res = impostor.authenticate()
        assert not res.ok and "CERTIFICATE_VERIFY_FAILED" in res.detail
        fwd = PodPortForward(impostor.api.configuration, "research", rt.job_id, [KERNEL_PORTS["hb_port"]])
        fwd.connect_timeout = 0.5
        local = fwd.start()[KERNEL_PORTS["hb_port"]]
        with socket.create_connection(("127.0.0.1", local), timeout=5) as s:
            s.settimeout(5)
            assert s.recv(10) == b""
        assert "CERTIFICATE_VERIFY_FAILED" in fwd.last_error
        fwd.close()
    finally:
        other.stop()


def test_a_request_sent_before_the_kernel_listens_is_delivered(sim, make_backend):
    """The forward holds a connection until the kernel accepts: nothing written early is lost."""
    b = make_backend({"kubeconfig": str(sim.kubeconfig), "context": "sim", "image": KERNEL_IMAGE})
    rt = runtime("early")
    submit(b, rt)
    info = None
    while info is None:  # as soon as the container runs: the kernel is still importing
        info = b.connection(rt)
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels(hb=False)
    try:
        t0 = time.monotonic()
        msg_id = kc.kernel_info()  # sent once, before the kernel has bound its ports
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id and time.monotonic() - t0 < 10
        refused = [e for _, _, port, e in sim.stream_log if port == KERNEL_PORTS["shell_port"] and e == "open"]
        assert len(refused) >= 1
    finally:
        kc.stop_channels()
        b.stop(rt)


def test_frames_follow_the_v4_channel_protocol(sim, make_backend):
    """Raw protocol check: port prefix frames on both channels, then data on channel 0."""
    import websocket

    b, rt = _running_pod(make_backend, sim)
    fwd = PodPortForward(b.api.configuration, "research", rt.job_id, [KERNEL_PORTS["hb_port"]])
    ws = fwd._open_stream(KERNEL_PORTS["hb_port"])
    try:
        assert ws.subprotocol == "v4.channel.k8s.io"
        port = KERNEL_PORTS["hb_port"].to_bytes(2, "little")
        assert {ws.recv(), ws.recv()} == {b"\x00" + port, b"\x01" + port}
        ws.send_binary(b"\x00" + b"ping-through-heartbeat")  # the kernel's heartbeat echoes (zmq REP)
        assert ws.recv_data()[0] == websocket.ABNF.OPCODE_BINARY
    finally:
        ws.close()


class ConnectProxy:
    """A minimal HTTP CONNECT proxy (as in front of many clusters); counts the tunnels it made."""

    def __init__(self) -> None:
        import threading

        self.tunnels: list[str] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        import threading

        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return client.close()
            head += chunk
        method, target = head.split(b" ")[:2]
        if method != b"CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return client.close()
        host, port = target.decode().rsplit(":", 1)
        self.tunnels.append(target.decode())
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def close(self) -> None:
        self.server.close()


def test_streams_take_the_kubeconfig_proxy_like_the_rest_calls(sim, make_backend, tmp_path):
    import yaml

    proxy = ConnectProxy()
    try:
        cfg = yaml.safe_load(sim.kubeconfig.read_text())
        cfg["clusters"][0]["cluster"]["proxy-url"] = f"http://127.0.0.1:{proxy.port}"
        proxied = tmp_path / "proxied-kubeconfig"
        proxied.write_text(yaml.safe_dump(cfg))
        b = make_backend({"kubeconfig": str(proxied), "context": "sim", "image": KERNEL_IMAGE})
        rt = runtime("proxied")
        submit(b, rt)
        started(b, rt)
        rest = len(proxy.tunnels)
        assert rest >= 1 and all(t == f"127.0.0.1:{sim.port}" for t in proxy.tunnels)
        with kernel(b.connection(rt)) as kc:
            assert run(kc, "print('through the proxy')") == "through the proxy\n"
        assert len(proxy.tunnels) >= rest + 4  # one tunnel per stream: shell, iopub, stdin, control
        b.stop(rt)
    finally:
        proxy.close()


def test_close_joins_every_thread_it_started(sim, make_backend):
    """A forward owns its threads: accept, keep-alive, one per local connection (open streams
    and connections still retrying a port nobody listens on); close() ends and joins them all."""
    import threading

    b, rt = _running_pod(make_backend, sim)
    before = set(threading.enumerate())  # the backend's own forward has threads too
    fwd = PodPortForward(b.api.configuration, "research", rt.job_id, [*KERNEL_PORTS.values(), 9])
    fwd.connect_timeout = 60.0  # the connection to port 9 keeps retrying until close()
    with kernel(_info(b, rt, fwd)) as kc:
        assert run(kc, "print(1)") == "1\n"
        waiting = socket.create_connection(("127.0.0.1", fwd.local_ports[9]), timeout=5)
        deadline = time.monotonic() + 10
        while fwd.threads < 7 and time.monotonic() < deadline:  # accept, keepalive, >= 4 streams, port 9
            time.sleep(0.05)
        assert fwd.threads >= 7 and fwd.open_streams >= 4
        t0 = time.monotonic()
        fwd.close()
        assert time.monotonic() - t0 < 5
        assert fwd.threads == 0
        assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("portforward-")]
        waiting.settimeout(5)
        assert waiting.recv(10) == b""  # the waiting client is told, not left hanging
        waiting.close()
