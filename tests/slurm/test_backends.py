"""The slurm and ssh backends against the real test bed: real sbatch over real SSH, real kernels."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from airavata_magic.profile import Resource
from airavata_magic.backends.slurm import SlurmBackend
from airavata_magic.backends.ssh import SshBackend
from airavata_magic.errors import BackendError, InvalidArgument
from airavata_magic.runtime import Runtime, RuntimeSpec, RuntimeState

from .kernel_helpers import connect, execute, observe, request, wait_state

pytestmark = pytest.mark.slurm

TERMINAL = {RuntimeState.FAILED, RuntimeState.STOPPED, RuntimeState.EXPIRED, RuntimeState.DEAD}


def _variant(backend, tmp_path, cls=SlurmBackend, **settings) -> SlurmBackend:
    res = backend.resource
    return cls(Resource(res.name, res.kind, {**res.settings, **settings}, res.source), lambda n: tmp_path)


def _listening(port: int) -> list[str]:
    """Local addresses listening on TCP ``port`` on this machine (the test bed's only node)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                found.append("127.0.0.1" if addr == "0100007F" else ("0.0.0.0" if set(addr) == {"0"} else addr))
    return found


def test_cpu_runtime_runs_cells_inside_its_job(hpc, started, expiring):
    s = request(hpc, "cpu", cpus=1, memory=512)
    started.append(s)
    assert s.runtime.job_id.isdigit() and s.runtime.state == RuntimeState.QUEUED
    kc = connect(s)
    out, status, _ = execute(kc, "import os; print(os.environ['SLURM_JOB_ID'], os.environ['SLURM_CPUS_PER_TASK'])")
    assert (status, out) == ("ok", f"{s.runtime.job_id} 1\n")
    assert s.runtime.node == hpc_node()
    job = subprocess.run(["scontrol", "show", "job", s.runtime.job_id], capture_output=True, text=True).stdout
    assert "MinMemoryNode=512M" in job and "NumCPUs=1" in job


def hpc_node() -> str:
    return os.uname().nodename.split(".")[0]


@pytest.mark.parametrize("gpus", [1, 2])
def test_gpu_runtime_sees_its_gres(hpc, started, gpus):
    s = request(hpc, f"gpu{gpus}", gpus=gpus, partition="gpu")
    started.append(s)
    kc = connect(s)
    out, status, _ = execute(kc, "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))")
    devices = out.strip().split(",")
    assert status == "ok" and len(set(devices)) == gpus and set(devices) <= {"0", "1", "2", "3"}


def test_impossible_gres_is_refused_at_submit_and_estimate(hpc):
    rt = Runtime(name="toomany", resource="hpc", kind="slurm", spec=RuntimeSpec(gpus=9, partition="gpu"))
    with pytest.raises(BackendError, match="could not start here.*not available"):
        hpc.estimate_start(rt)
    with pytest.raises(BackendError, match="sbatch refused runtime 'toomany'.*not available"):
        hpc.request(rt)


def test_estimate_start_uses_sbatch_test_only(hpc):
    rt = Runtime(name="est", resource="hpc", kind="slurm", spec=RuntimeSpec(gpus=1, partition="gpu"))
    est = hpc.estimate_start(rt)
    assert est is not None and 0 <= est < 60
    assert "partition gpu" in hpc.estimate_reason(rt)
    assert rt.job_id is None  # nothing was submitted


def test_files_are_private_and_kernel_binds_loopback_on_the_node(hpc, started, slurm_testbed):
    s = request(hpc, "modes")
    started.append(s)
    connect(s)
    rundir = s.runtime.backend_state["run_dir"]
    assert "key" not in str(s.runtime.to_json())  # no secret in the record
    for path, mode in ((rundir, 0o700), (os.path.dirname(rundir), 0o700), (f"{rundir}/kernel.json", 0o600),
                       (os.path.dirname(os.path.dirname(rundir)), 0o700)):
        st = os.stat(path)  # the node is this machine: check the real files, as their owner made them
        assert (st.st_mode & 0o777, st.st_uid) == (mode, int(subprocess.check_output(["id", "-u", slurm_testbed.user]))), path
    import json

    info = json.loads(Path(f"{rundir}/kernel.json").read_text())
    assert info["ip"] == "127.0.0.1" and len(info["key"]) == 64
    for name in ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"):
        assert _listening(info[name]) == ["127.0.0.1"], name
    assert s.info["ip"] == "127.0.0.1" and s.info["key"] == info["key"]


def test_restart_keeps_the_allocation_and_clears_variables(hpc, started):
    s = request(hpc, "restart")
    started.append(s)
    kc = connect(s)
    assert execute(kc, "x = 5; import os; print(os.getpid())")[1] == "ok"
    pid_before = execute(kc, "print(os.getpid())")[0]
    hpc.restart(s.runtime)
    kc = connect(s)
    out, status, _ = execute(kc, "import os; print(os.environ['SLURM_JOB_ID'], os.getpid()); x")
    assert status == "error" and "NameError" in out
    job, pid = out.split("\n")[0].split()
    assert job == s.runtime.job_id and pid != pid_before.strip()
    assert observe(s).state == RuntimeState.READY


def test_outside_scancel_is_reported_within_seconds(hpc, started, slurm_testbed):
    s = request(hpc, "cancelme")
    started.append(s)
    connect(s)
    slurm_testbed.as_user(f"scancel {s.runtime.job_id}")
    t0 = time.monotonic()
    obs = wait_state(s, TERMINAL, timeout=10)
    assert obs.state == RuntimeState.STOPPED and "cancelled outside" in obs.reason
    assert time.monotonic() - t0 < 10
    assert "CANCELLED" in obs.log_tail


def test_kernel_that_cannot_start_fails_within_10s_with_log_tail(hpc, started, tmp_path):
    broken = _variant(hpc, tmp_path, python="/nonexistent/bin/python3")
    s = request(broken, "broken")
    started.append(s)
    t0 = time.monotonic()
    obs = wait_state(s, TERMINAL, timeout=10)
    assert time.monotonic() - t0 < 10
    assert obs.state == RuntimeState.FAILED and "could not start" in obs.reason
    assert "/nonexistent/bin/python3" in obs.log_tail


def _wait_reconnected(backend, s, before: int) -> None:
    """The forwards come back by themselves: ZeroMQ reconnects to our listeners (same local ports)
    and we reconnect SSH, with no call from the test. Then, as any client after a reconnect, wait
    until iopub carries messages again (PUB drops what is published before SUB is back)."""
    forwards = backend._tunnels[s.runtime.name].forwards
    deadline = time.monotonic() + 10
    while (backend.conn.connects == before or not all(f.active_connections for f in forwards)) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.conn.connects > before, "the forwards did not reconnect by themselves"
    assert all(f.active_connections for f in forwards), "not every forward is back"
    s.client.wait_for_ready(timeout=10)


def test_dropped_ssh_connection_is_restored_under_a_live_kernel(hpc, started, slurm_testbed):
    s = request(hpc, "dropped")
    started.append(s)
    kc = connect(s)
    assert execute(kc, "x = 41")[1] == "ok"
    before = hpc.conn.connects
    hpc.conn.transport().close()  # our side drops the link
    _wait_reconnected(hpc, s, before)
    out, status, _ = execute(kc, "x += 1; print(x)")
    assert (status, out) == ("ok", "42\n")
    # The server side drops it: kill the sshd processes serving the test user (ours, by pid).
    pids = subprocess.run(["pgrep", "-u", slurm_testbed.user, "-f", "^sshd: "], capture_output=True, text=True).stdout.split()
    assert pids
    before = hpc.conn.connects
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    _wait_reconnected(hpc, s, before)
    out, status, _ = execute(kc, "x += 1; print(x)", timeout=60)
    assert (status, out) == ("ok", "43\n")
    assert hpc.conn.connects >= 3


def test_shell_metacharacters_reach_sbatch_intact_and_harmless(hpc, started, tmp_path, slurm_testbed):
    marker = f"/tmp/airavata-pwned-{time.time_ns()}"
    nasty = f"'; touch {marker} #$(id) `id` \"q\""
    base = Path(f"/tmp/air magic {time.time_ns()}")
    work_dir = f"{base}/{nasty}/wd"
    subprocess.run(["install", "-d", "-o", slurm_testbed.user, "-m", "0755", str(base)], check=True)
    setup = [f"printf '%s' {__import__('shlex').quote(nasty)} > \"$HOME/setup-marker\""]
    odd = _variant(hpc, tmp_path, work_dir=work_dir, setup=setup, account=nasty)
    name = f"q'\";touch${{IFS}}{marker};#$(id)"
    s = request(odd, name)
    started.append(s)
    kc = connect(s)
    assert execute(kc, "print(6 * 7)")[:2] == ("42\n", "ok")
    row = subprocess.run(["squeue", "-h", "-j", s.runtime.job_id, "-o", "%j|%a"], capture_output=True, text=True).stdout
    assert row.rstrip("\n") == f"{name}|{nasty}"
    assert s.runtime.backend_state["run_dir"].startswith(work_dir + "/runtimes/")
    assert os.stat(work_dir).st_mode & 0o777 == 0o700
    home = os.path.expanduser(f"~{slurm_testbed.user}")
    assert Path(f"{home}/setup-marker").read_text() == nasty
    with pytest.raises(BackendError) as e:
        _variant(hpc, tmp_path, partition=nasty).request(Runtime(name="p", resource="hpc", kind="slurm"))
    assert nasty in str(e.value)
    assert not os.path.exists(marker)


def test_ssh_runtime_on_a_plain_host(ws, started, slurm_testbed):
    s = request(ws, "plain", walltime=30)
    started.append(s)
    assert s.runtime.job_id.isdigit()
    kc = connect(s)
    out, status, _ = execute(kc, "import os; print(os.environ.get('SLURM_JOB_ID'), os.getuid() != 0)")
    assert (status, out) == ("ok", "None True\n")
    assert s.runtime.ends_at is not None and s.runtime.ends_at - time.time() > 25 * 60
    ws.restart(s.runtime)
    kc = connect(s)
    assert execute(kc, "print('again')")[:2] == ("again\n", "ok")
    launcher = int(s.runtime.job_id)
    ws.stop(s.runtime)
    # The backend reports what it sees (the launcher ended); STOPPED is the manager's to record.
    wait_state(s, TERMINAL, timeout=10)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{launcher}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{launcher}")


def test_ssh_runtime_killed_from_outside_is_dead(ws, started, slurm_testbed):
    s = request(ws, "killed")
    started.append(s)
    kc = connect(s)
    assert execute(kc, "1")[1] == "ok"
    slurm_testbed.as_user(f"kill -9 {s.runtime.job_id}")
    obs = wait_state(s, TERMINAL, timeout=10)
    assert obs.state == RuntimeState.DEAD and "gone" in obs.reason


def test_ssh_resource_refuses_scheduler_options(ws):
    with pytest.raises(InvalidArgument, match="no scheduler: --gpus, --partition"):
        ws.request(Runtime(name="g", resource="ws", kind="ssh", spec=RuntimeSpec(gpus=1, partition="gpu")))


def test_authenticate_is_a_real_handshake(hpc, ws, tmp_path):
    assert hpc.authenticate().ok and ws.authenticate().ok
    empty = tmp_path / "kh"
    empty.write_text("")
    row = _variant(hpc, tmp_path, known_hosts=str(empty)).authenticate()
    assert not row.ok and "ssh-keyscan" in row.detail
    row = _variant(ws, tmp_path, cls=SshBackend, port=1).authenticate()
    assert not row.ok and "cannot reach" in row.detail
