"""The relay's poll loop against a real kernel: a slow backend liveness check must neither freeze
a cell's output nor get a live kernel declared dead; a check that says "dead" still ends the cell."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

import pytest
from jupyter_client.manager import KernelManager

from airavata_magic.errors import KernelDied
from airavata_magic.relay import KernelLink, run_cell


class RecordingSink:
    """Keeps every relayed stream chunk with the time it arrived."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, str]] = []

    def stream(self, label: str | None, name: str, text: str) -> None:
        self.chunks.append((time.monotonic(), text))

    def stream_packed(self, label: str | None, packed: bytes, unpack: Callable[[bytes], Any]) -> None:
        c = unpack(packed)
        self.stream(label, c.get("name", "stdout"), c.get("text", ""))

    def display(self, label, msg_type, content) -> None:
        pass

    def clear_output(self, label, wait) -> None:
        pass

    def input(self, label, prompt, password) -> str:
        return ""

    def comm(self, link, msg_type, content, buffers, metadata=None) -> None:
        pass


@pytest.fixture(scope="module")
def kernel():
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable
    km.start_kernel()
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)


@pytest.fixture
def link(kernel):
    info = kernel.get_connection_info(session=False)
    info["key"] = kernel.session.key.decode()
    link = KernelLink(info, label="slow")
    link.wait_ready(timeout=60)
    yield link
    link.close()


def test_slow_liveness_check_neither_freezes_output_nor_kills_the_kernel(link):
    calls: list[str] = []

    def alive(lk: KernelLink) -> bool | None:
        calls.append(threading.current_thread().name)
        time.sleep(5.0)  # a slow API server: longer than the heartbeat's patience (3.5 s)
        return True

    sink = RecordingSink()
    code = "import time\nfor i in range(12):\n    print(i, flush=True)\n    time.sleep(0.25)"
    (outcome,) = run_cell([link], code, sink, alive=alive)
    assert outcome.status == "ok", outcome.error
    assert "".join(t for _, t in sink.chunks) == "".join(f"{i}\n" for i in range(12))
    arrivals = [at for at, _ in sink.chunks]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert max(gaps) < 1.5, f"output froze for {max(gaps):.1f} s while the liveness check ran"
    assert calls, "the liveness check was never asked"
    # the link is still usable for the next cell
    (again,) = run_cell([link], "print('next')", sink)
    assert again.status == "ok"


def test_a_liveness_check_that_says_dead_ends_the_cell_soon(link):
    def alive(lk: KernelLink) -> bool | None:
        time.sleep(0.1)
        return False

    t0 = time.monotonic()
    with pytest.raises(KernelDied):
        run_cell([link], "import time\ntime.sleep(30)", RecordingSink(), alive=alive)
    assert time.monotonic() - t0 < 3.0
    link.send_interrupt_request()  # the kernel really is alive: stop its sleep for the next test
