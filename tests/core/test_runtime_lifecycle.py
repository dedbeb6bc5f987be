"""The manager as the one owner of runtime state, against real local kernel processes: unreadable
records, idle runtimes nobody holds, walltime timers and observers that must not act."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from airavata_magic.errors import InvalidArgument
from airavata_magic.manager import RuntimeManager
from airavata_magic.runtime import RuntimeState, RuntimeStore, process_start

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private AIRAVATA_MAGIC_HOME and a profile with one local-process resource."""
    home = tmp_path / "home"
    profile = tmp_path / "cybershuttle.yml"
    profile.write_text("resources:\n  box:\n    kind: local\n")
    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(home))
    monkeypatch.delenv("AIRAVATA_MAGIC_PROFILE", raising=False)
    monkeypatch.delenv("AIRAVATA_MAGIC_IDLE_TIMEOUT", raising=False)
    return home, str(profile)


@pytest.fixture
def manager(env):
    m = RuntimeManager(RuntimeStore(env[0]), warn=lambda _text: None)
    yield m
    try:
        m.stop_all()
    finally:
        m.close()


def _alive(pid: int) -> bool:
    return process_start(pid) is not None


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive after {timeout} s"
        time.sleep(0.1)


def _row(manager: RuntimeManager, name: str) -> dict:
    rows = [r for r in manager.rows() if r["name"] == name]
    assert len(rows) == 1, rows
    return rows[0]


def test_unreadable_records_are_listed_and_removed_with_their_process(manager, env):
    home, profile = env
    runtimes = home / "runtimes"
    runtimes.mkdir(parents=True, exist_ok=True)
    (runtimes / "garbage.json").write_text("{ not json")
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        # A record of a newer or damaged version: its state is unknown, but it names the process.
        (runtimes / "half.json").write_text(json.dumps({
            "name": "half", "resource": "box", "kind": "local", "state": "exploded", "profile": profile,
            "job_id": str(sleeper.pid),
            "backend_state": {"pid": sleeper.pid, "start_time": process_start(sleeper.pid)}}))
        table = manager.table()
        broken = table[table["state"] == "broken"]
        assert sorted(broken["name"]) == ["garbage", "half"]
        assert all("%stop_runtime" in r and "unreadable" in r for r in broken["reason"])

        msg = manager.stop("half")
        assert "unreadable record" in msg and "removed" in msg and "stopped" in msg
        sleeper.wait(timeout=10)  # its process was ended, not just forgotten
        assert not (runtimes / "half.json").exists()

        msgs = manager.stop_all()
        assert any("'garbage'" in m and "removed" in m for m in msgs)
        assert list(runtimes.glob("*.json")) == []
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_observe_never_kills_the_manager_stops_what_ended(manager, env):
    _, profile = env
    manager.request("short", file=profile, resource="box", overrides={"walltime": 5})
    rt = manager.wait("short", timeout=60)
    pid = int(rt.backend_state["pid"])
    rt.ends_at = time.time() - 1  # as if the walltime had passed
    backend = manager.backend_for(rt)
    obs = backend.observe([rt])["short"]
    assert obs.state == RuntimeState.EXPIRED
    assert _alive(pid), "observe() killed the kernel: an observer must not act"
    manager.refresh([rt])
    _wait_gone(pid, 15)
    assert manager.get("short").state == RuntimeState.EXPIRED


def test_close_cancels_walltime_timers(manager, env):
    _, profile = env
    manager.request("timed", file=profile, resource="box", overrides={"walltime": 30})
    manager.wait("timed", timeout=60)
    assert manager.walltime.pending() == ["timed"]
    assert any(isinstance(t, threading.Timer) and t.is_alive() for t in threading.enumerate())
    manager.close()
    assert manager.walltime.pending() == []
    deadline = time.monotonic() + 5
    while any(isinstance(t, threading.Timer) and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a walltime timer outlived close()"
        time.sleep(0.05)


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from airavata_magic.manager import RuntimeManager
    from airavata_magic.runtime import RuntimeStore
    m = RuntimeManager(RuntimeStore(Path(sys.argv[1])), warn=lambda t: None)
    m.request("orphan", file=sys.argv[2], resource="box")
    m.wait("orphan", timeout=120)
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_runtime_whose_notebook_died_is_shown_unheld_and_ended_after_the_idle_limit(manager, env):
    """The papermill case: the notebook process dies (kill -9) after requesting a local runtime.
    Its kernel must not live forever: the runtimes table says nobody holds it, and once the idle
    limit passes with no holder the kernel ends itself (no airavata-magic process needed)."""
    home, profile = env
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), profile], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "AIRAVATA_MAGIC_IDLE_TIMEOUT": "8",
                                   "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")})
    try:
        assert holder.stdout.readline() == "ready\n"
        assert _row(manager, "orphan")["held by"] == f"pid {holder.pid}"
        pid = int(manager.get("orphan").backend_state["pid"])
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        row = _row(manager, "orphan")
        assert row["held by"] == "nobody" and row["state"] == "ready"
        assert _alive(pid)
        _wait_gone(pid, 60)
        row = _row(manager, "orphan")
        assert row["state"] == "stopped" and "idle" in row["reason"], row
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_the_manager_ends_runtimes_nobody_held_for_the_idle_limit(manager, env, monkeypatch):
    """Kernels without a guard of their own (Slurm, SSH, pods) are ended by the next manager that
    looks at them once nobody held them for the idle limit."""
    _, profile = env
    monkeypatch.setenv("AIRAVATA_MAGIC_IDLE_TIMEOUT", "0")  # no guard in the kernel: the manager decides
    manager.request("quiet", file=profile, resource="box")
    rt = manager.wait("quiet", timeout=60)
    pid = int(rt.backend_state["pid"])
    manager.close()  # this process stops holding it
    monkeypatch.setenv("AIRAVATA_MAGIC_IDLE_TIMEOUT", "1")
    assert _row(manager, "quiet")["held by"] == "nobody"  # the idle clock starts
    assert manager.get("quiet").unheld_since is not None
    deadline = time.monotonic() + 30
    while manager.get("quiet").state != RuntimeState.STOPPED:
        assert time.monotonic() < deadline, "the idle runtime was never stopped"
        time.sleep(0.5)
        manager.rows()
    assert "idle" in manager.get("quiet").reason
    _wait_gone(pid, 15)


@pytest.mark.parametrize("value", ["soon", "-5", "inf", "nan"])
def test_a_bad_idle_limit_is_one_clear_error(manager, env, monkeypatch, value):
    monkeypatch.setenv("AIRAVATA_MAGIC_IDLE_TIMEOUT", value)
    with pytest.raises(InvalidArgument, match="AIRAVATA_MAGIC_IDLE_TIMEOUT=.*number of seconds"):
        manager.request("x", file=env[1], resource="box")


class _Sink:
    """Keeps the streamed text of a cell, with arrival times."""

    def __init__(self) -> None:
        self.chunks: list[tuple[float, str]] = []

    def stream(self, label, name, text) -> None:
        self.chunks.append((time.monotonic(), text))

    def stream_packed(self, label, packed, unpack) -> None:
        self.stream(label, "stdout", unpack(packed).get("text", ""))

    def display(self, label, msg_type, content) -> None:
        pass

    def clear_output(self, label, wait) -> None:
        pass

    def input(self, label, prompt, password) -> str:
        return ""

    def comm(self, link, msg_type, content, buffers, metadata=None) -> None:
        pass


def test_a_slow_liveness_check_gets_a_deadline_shorter_than_the_heartbeat(manager, env):
    """Fix for a slow API server: the manager bounds the backend's liveness check below the
    heartbeat's patience, and the cell's output keeps flowing while a check hangs."""
    from airavata_magic.relay.link import HEARTBEAT_TIMEOUT

    _, profile = env
    manager.request("slowcheck", file=profile, resource="box")
    rt = manager.wait("slowcheck", timeout=60)
    backend = manager.backend_for(rt)
    asked: list[float] = []

    def slow_alive(runtime, timeout=None):  # this test's stand-in for an API server under load
        asked.append(timeout)
        time.sleep(5)
        return True

    backend.kernel_alive = slow_alive
    sink = _Sink()
    code = "import time\nfor i in range(8):\n    print(i, flush=True)\n    time.sleep(0.25)"
    (outcome,) = manager.run(["slowcheck"], code, sink)
    assert outcome.status == "ok"
    assert "".join(t for _, t in sink.chunks) == "".join(f"{i}\n" for i in range(8))
    assert asked and all(t is not None and t < HEARTBEAT_TIMEOUT for t in asked), asked
