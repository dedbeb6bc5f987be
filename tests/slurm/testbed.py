"""A real OpenSSH server and a real single-node Slurm cluster on loopback, for tests and benchmarks.

What it starts (as root, all on 127.0.0.1): sshd on port 2222 (own host key, one test user that
logs in with its own key), munged, slurmctld and slurmd with four fake GPUs as gres (partitions
``debug`` and ``gpu``). The kernel side uses a venv built from ``/usr/bin/python3`` with ipykernel,
cached under ``/var/cache/airavata-testbed`` so later runs start in ~20 s.

Use from tests of any area: the session-scoped fixture ``slurm_testbed`` lives in
``tests/slurm/conftest.py``; to use it from another area, re-export it in that area's conftest::

    from tests.slurm.testbed import slurm_testbed  # noqa: F401  (pytest fixture)

    def test_x(slurm_testbed):
        slurm_testbed.profile   # path of a cybershuttle.yml with resources `hpc` (slurm), `ws` (ssh)
        slurm_testbed.user, slurm_testbed.host, slurm_testbed.port, slurm_testbed.known_hosts

Idempotent: packages, the user, keys and the venv are reused; running daemons are reused. Several
processes may use the test bed at once (test areas run in parallel, the benchmark): each holds a
lease, and the last one to leave stops the daemons the test bed started, by PID
(``AIRAVATA_TESTBED_KEEP=1`` keeps them running for the next run). Outside a root machine with apt, the fixture skips with the reason,
except under ``CI=true`` where it fails.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

STATE = Path(os.environ.get("AIRAVATA_TESTBED_DIR", "/var/lib/airavata-testbed"))
CACHE = Path("/var/cache/airavata-testbed")
KERNEL_VENV = CACHE / "kernel-venv"
USER = "airtest"
HOST = "127.0.0.1"
PORT = 2222
GPUS = 4  # fake GPUs (gres); several test sessions may hold some at once
PACKAGES = ["openssh-server", "munge", "slurm-wlm"]
BINARIES = ["/usr/sbin/sshd", "/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch"]


class TestbedError(RuntimeError):
    """The test bed could not be installed or started; the message says which step and why."""


@dataclasses.dataclass
class SlurmTestbed:
    """What tests need to reach the test bed."""

    profile: Path  # cybershuttle.yml: resources hpc (slurm), ws (ssh); presets hpc_cpu, hpc_gpu
    user: str
    host: str
    port: int
    identity_file: Path
    known_hosts: Path
    python: str  # kernel-side interpreter (ipykernel installed)
    state_dir: Path
    node: str  # the Slurm node's name (hostname -s)
    started_pids: list[int] = dataclasses.field(default_factory=list)

    def ssh_argv(self, *remote: str) -> list[str]:
        """An OpenSSH command line that runs ``remote`` as the test user (for checks in tests)."""
        return [
            "ssh", "-p", str(self.port), "-i", str(self.identity_file),
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", f"{self.user}@{self.host}", *remote,
        ]

    def as_user(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a shell command locally as the test user (runuser), for checks on the 'node'."""
        return subprocess.run(["runuser", "-u", self.user, "--", "sh", "-c", command],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """Leave the test bed. The last user still holding it stops the daemons the test bed
        started (recorded by PID in ``daemons.json``), newest first; earlier leavers stop nothing,
        so parallel test sessions and benchmarks never lose the cluster under them."""
        with _locked():
            _leave()
            if _live_leases():
                return
            started = _read_daemons()
            for pid, name in reversed(started):
                if _comm(pid) == name:  # the same process, not a reused PID
                    _stop_pid(pid)
            (STATE / "daemons.json").unlink(missing_ok=True)
        self.started_pids.clear()


# -- shared use: a lease per process, the daemons' PIDs on disk --------------------------------
LEASES = STATE / "leases"


@contextlib.contextmanager
def _locked():
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(STATE / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _take_lease() -> None:
    LEASES.mkdir(exist_ok=True, mode=0o700)
    (LEASES / str(os.getpid())).touch()


def _leave() -> None:
    (LEASES / str(os.getpid())).unlink(missing_ok=True)


def _live_leases() -> list[int]:
    """PIDs of processes using the test bed now (leases of dead processes are removed)."""
    live = []
    for f in LEASES.glob("*") if LEASES.exists() else []:
        if f.name.isdigit() and _pid_alive(int(f.name)):
            live.append(int(f.name))
        else:
            f.unlink(missing_ok=True)
    return live


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _read_daemons() -> list[tuple[int, str]]:
    try:
        return [(int(p), str(n)) for p, n in json.loads((STATE / "daemons.json").read_text())]
    except (OSError, ValueError, TypeError):
        return []


def _record_daemons(started: list[int]) -> None:
    known = _read_daemons() + [(pid, _comm(pid)) for pid in started]
    (STATE / "daemons.json").write_text(json.dumps(known))


# -- helpers ---------------------------------------------------------------------------------
def _run(argv: list[str], step: str, timeout: float = 600, env: dict | None = None, **kw) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{step}: {' '.join(argv)} did not finish in {timeout:.0f} s") from None
    except OSError as e:
        raise TestbedError(f"{step}: cannot run {argv[0]}: {e}") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip()[-800:]
        raise TestbedError(f"{step}: {' '.join(argv)} exited {p.returncode}: {tail}")
    return p.stdout


def _wait(what: str, check, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            pass
        time.sleep(0.1)
    tail = ""
    if log and log.exists():
        tail = " Log tail: " + log.read_text(errors="replace")[-800:].replace("\n", " | ")
    raise TestbedError(f"{what} not ready after {timeout:.0f} s.{tail}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _stop_pid(pid: int, grace: float = 10) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if _pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# -- installation (idempotent) ----------------------------------------------------------------
def apt_install(packages: list[str] | tuple[str, ...], what: str) -> None:
    """apt-get install ``packages`` without letting their scripts start daemons (policy-rc.d);
    one apt-get update and a retry when the package lists are missing or stale."""
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    try:
        try:
            _run(argv, f"installing {what}", env=env)
        except TestbedError:
            _run(["apt-get", "update", "-q"], "apt-get update", env=env)
            _run(argv, f"installing {what}", env=env)
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)


def ensure_packages() -> None:
    """apt-get install what is missing; package scripts are kept from starting daemons."""
    if all(os.path.exists(b) for b in BINARIES):
        return
    if os.geteuid() != 0:
        raise TestbedError("the Slurm test bed needs root to apt-get install openssh-server, munge and slurm-wlm")
    apt_install(PACKAGES, "packages")


def ensure_user() -> pwd.struct_passwd:
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        _run(["useradd", "-m", "-s", "/bin/bash", USER], "creating the test user")
        pw = pwd.getpwnam(USER)
    # With UsePAM no, sshd refuses a locked ('!') account; '*' means "no password, not locked".
    _run(["usermod", "-p", "*", USER], "unlocking the test user")
    return pw


def _write_if_changed(path: Path, text: str) -> None:
    """Replace a file atomically, and only when its content changes: other test sessions may be
    reading it (known_hosts, authorized_keys, the profile) at this very moment."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def ensure_keys(pw: pwd.struct_passwd) -> tuple[Path, Path, Path]:
    """Host key, the client's key (root-owned, 0600) and the user's authorized_keys."""
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(STATE, 0o700)
    host_key, client_key = STATE / "ssh_host_ed25519_key", STATE / "id_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "generating SSH keys")
    ssh_dir = Path(pw.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    _write_if_changed(auth, Path(f"{client_key}.pub").read_text())
    for p, mode in ((ssh_dir, 0o700), (auth, 0o600)):
        os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(p, mode)
    known = STATE / "known_hosts"
    kind, blob = Path(f"{host_key}.pub").read_text().split()[:2]
    _write_if_changed(known, f"[{HOST}]:{PORT} {kind} {blob}\n")
    return host_key, client_key, known


def ensure_kernel_venv() -> Path:
    """A venv from /usr/bin/python3 with ipykernel, world-readable so the test user can run it."""
    python = KERNEL_VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import ipykernel"], capture_output=True).returncode == 0:
        return python
    if not Path("/usr/bin/python3").exists():
        raise TestbedError("the kernel venv needs /usr/bin/python3 (apt-get install python3)")
    CACHE.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE, 0o755)
    shutil.rmtree(KERNEL_VENV, ignore_errors=True)
    if subprocess.run(["/usr/bin/python3", "-c", "import ensurepip, venv"], capture_output=True).returncode:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "python3-venv"]
        try:
            _run(argv, "installing python3-venv", env=env)
        except TestbedError:  # a fresh machine has no package lists yet
            _run(["apt-get", "update", "-q"], "apt-get update", env=env)
            _run(argv, "installing python3-venv", env=env)
    _run(["/usr/bin/python3", "-m", "venv", str(KERNEL_VENV)], "creating the kernel venv")
    _run([str(python), "-m", "pip", "install", "-q", "ipykernel"], "installing ipykernel in the kernel venv")
    _run(["chmod", "-R", "a+rX", str(KERNEL_VENV)], "making the kernel venv readable")
    return python


# -- daemons ---------------------------------------------------------------------------------
def _sshd_config(host_key: Path) -> Path:
    conf = STATE / "sshd_config"
    conf.write_text(
        f"Port {PORT}\nListenAddress {HOST}\nHostKey {host_key}\nPidFile {STATE / 'sshd.pid'}\n"
        "AuthenticationMethods publickey\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin no\n"
        f"AllowUsers {USER}\nAllowTcpForwarding yes\nMaxStartups 100:30:200\nMaxSessions 50\n"
        "ClientAliveInterval 0\nSubsystem sftp internal-sftp\n"
    )
    return conf


def start_sshd(host_key: Path, started: list[int]) -> None:
    pidfile = STATE / "sshd.pid"
    if _read_pid(pidfile) and _port_open(HOST, PORT):
        return  # an earlier run's sshd (kept): reuse, and leave it alone at the end
    conf = _sshd_config(host_key)
    Path("/run/sshd").mkdir(exist_ok=True)
    _run(["/usr/sbin/sshd", "-t", "-f", str(conf)], "checking sshd_config")
    log = STATE / "sshd.log"
    pidfile.unlink(missing_ok=True)
    _run(["/usr/sbin/sshd", "-f", str(conf), "-E", str(log)], "starting sshd")
    _wait("sshd pid file", lambda: _read_pid(pidfile), 10, log)
    started.append(_read_pid(pidfile))
    _wait(f"sshd on {HOST}:{PORT}", lambda: _port_open(HOST, PORT), 10, log)


def start_munge(started: list[int]) -> None:
    pidfile = Path("/run/munge/munged.pid")
    if _read_pid(pidfile):
        return
    _run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"], "creating /run/munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists() or key.stat().st_size == 0:
        _run(["runuser", "-u", "munge", "--", "mungekey", "--create", "--force"], "creating the munge key")
    _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force"], "starting munged")
    _wait("munged pid file", lambda: _read_pid(pidfile), 10)
    started.append(_read_pid(pidfile))
    _wait("munge", lambda: subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0, 10)


def _slurm_conf(node: str, gres_dir: Path) -> None:
    mem = int(int(subprocess.run(["free", "-m"], capture_output=True, text=True).stdout.split("\n")[1].split()[1]) * 0.9)
    cpus = os.cpu_count() or 1
    etc = Path("/etc/slurm")
    etc.mkdir(exist_ok=True)
    (etc / "slurm.conf").write_text(
        "# Written by the airavata-magic test bed (tests/slurm/testbed.py).\n"
        f"ClusterName=airavata-test\nSlurmctldHost={node}({HOST})\n"
        "AuthType=auth/munge\nCredType=cred/munge\nSlurmUser=slurm\nSlurmdUser=root\n"
        "StateSaveLocation=/var/spool/slurmctld\nSlurmdSpoolDir=/var/spool/slurmd\n"
        "SlurmctldPidFile=/run/slurm/slurmctld.pid\nSlurmdPidFile=/run/slurm/slurmd.pid\n"
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log\nSlurmdLogFile=/var/log/slurm/slurmd.log\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
        "SchedulerType=sched/backfill\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
        "DefMemPerCPU=256\nReturnToService=2\nKillWait=5\nOverTimeLimit=0\nMailProg=/bin/true\n"
        "MinJobAge=600\nMessageTimeout=20\nGresTypes=gpu\n"
        # Schedule a batch job at submit time instead of up to 3 s later (Slurm's default
        # batch_sched_delay): tests and benchmarks then measure our code, not that random wait.
        # Backfill every second: a job waiting for GPUs must not hold up CPU jobs for 30 s.
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1,bf_continue\n"
        f"NodeName={node} NodeAddr={HOST} CPUs={cpus} RealMemory={mem} Gres=gpu:{GPUS} State=UNKNOWN\n"
        # Cores are shared (FORCE:16) so that 16 kernels fit on 2 cores; a default time limit lets
        # the backfill scheduler start short jobs next to a job waiting for GPUs.
        f"PartitionName=debug Nodes={node} Default=YES DefaultTime=60 MaxTime=INFINITE State=UP OverSubscribe=FORCE:16\n"
        f"PartitionName=gpu Nodes={node} DefaultTime=60 MaxTime=INFINITE State=UP OverSubscribe=FORCE:16\n"
    )
    (etc / "gres.conf").write_text(f"AutoDetect=off\nNodeName={node} Name=gpu File={gres_dir}/nvidia[0-{GPUS - 1}]\n")


def start_slurm(node: str, started: list[int]) -> None:
    ctl_pid, d_pid = Path("/run/slurm/slurmctld.pid"), Path("/run/slurm/slurmd.pid")
    if _read_pid(ctl_pid) and _read_pid(d_pid):
        return
    gres_dir = STATE / "dev"
    gres_dir.mkdir(exist_ok=True)
    os.chmod(gres_dir, 0o755)
    for i in range(GPUS):  # Slurm rejects regular files as GPU devices: character devices (/dev/null's)
        dev = gres_dir / f"nvidia{i}"
        if not dev.is_char_device():
            dev.unlink(missing_ok=True)
            _run(["mknod", "-m", "666", str(dev), "c", "1", "3"], "creating fake GPU devices")
    _slurm_conf(node, gres_dir)
    for d in ("/run/slurm", "/var/spool/slurmctld", "/var/log/slurm"):
        Path(d).mkdir(parents=True, exist_ok=True)
    # A drained node stays drained across restarts: start from a clean controller state. The
    # fresh controller numbers jobs from 1 again, so slurmd's spool goes too: its cred_state
    # remembers the job ids it launched before and refuses a reused one ("Job N already running,
    # do not launch second copy"), leaving the job "launch failed requeued held".
    for spool in ("/var/spool/slurmctld", "/var/spool/slurmd"):
        shutil.rmtree(spool, ignore_errors=True)
        Path(spool).mkdir()
    for d in ("/run/slurm", "/var/spool/slurmctld", "/var/log/slurm"):
        shutil.chown(d, "slurm", "slurm")
    ctl_log = Path("/var/log/slurm/slurmctld.log")
    _run(["/usr/sbin/slurmctld"], "starting slurmctld")
    _wait("slurmctld pid file", lambda: _read_pid(ctl_pid), 15, ctl_log)
    started.append(_read_pid(ctl_pid))
    _wait("slurmctld (scontrol ping)",
          lambda: "UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True).stdout, 30, ctl_log)
    d_log = Path("/var/log/slurm/slurmd.log")
    _run(["/usr/sbin/slurmd"], "starting slurmd")
    _wait("slurmd pid file", lambda: _read_pid(d_pid), 15, d_log)
    started.append(_read_pid(d_pid))

    def idle() -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True).stdout
        return "idle" in out or "mixed" in out or "allocated" in out

    _wait("the Slurm node (sinfo idle)", idle, 40, d_log)


def write_profile(tb_python: Path, client_key: Path, known: Path, node: str) -> Path:
    profile = STATE / "cybershuttle.yml"
    _write_if_changed(profile, 
        "# The airavata-magic test bed: a loopback sshd and Slurm cluster (tests/slurm/testbed.py).\n"
        "resources:\n"
        "  hpc:\n"
        "    kind: slurm\n"
        f"    host: {HOST}\n    port: {PORT}\n    user: {USER}\n"
        f"    identity_file: {client_key}\n    known_hosts: {known}\n"
        f"    python: {tb_python}\n"
        "    partition: debug\n"
        "  ws:\n"
        "    kind: ssh\n"
        f"    host: {HOST}\n    port: {PORT}\n    user: {USER}\n"
        f"    identity_file: {client_key}\n    known_hosts: {known}\n"
        f"    python: {tb_python}\n"
        "runtimes:\n"
        "  hpc_cpu: {resource: hpc, cpus: 1, memory: 512M, walltime: 30}\n"
        "  hpc_gpu: {resource: hpc, gpus: 1, partition: gpu, walltime: 30}\n"
    )
    os.chmod(profile, 0o644)
    return profile


def start() -> SlurmTestbed:
    """Install what is missing and start (or reuse) every daemon. Raises ``TestbedError``."""
    if os.geteuid() != 0:
        raise TestbedError("the Slurm test bed must run as root (it installs packages and starts sshd and Slurm)")
    STATE.mkdir(parents=True, exist_ok=True, mode=0o700)
    node = socket.gethostname().split(".")[0]
    if not node:
        raise TestbedError("Slurm needs a host name: `hostname -s` is empty")
    started: list[int] = []
    # One process sets the test bed up at a time (parallel test areas, the benchmark), and each
    # user holds a lease so that only the last one to leave stops the daemons.
    with _locked():
        try:
            ensure_packages()
            pw = ensure_user()
            host_key, client_key, known = ensure_keys(pw)
            python = ensure_kernel_venv()
            start_sshd(host_key, started)
            start_munge(started)
            start_slurm(node, started)
            profile = write_profile(python, client_key, known, node)
        except BaseException:
            for pid in reversed(started):
                _stop_pid(pid)
            raise
        _record_daemons(started)
        _take_lease()
    return SlurmTestbed(profile=profile, user=USER, host=HOST, port=PORT, identity_file=client_key,
                        known_hosts=known, python=str(python), state_dir=STATE, node=node, started_pids=started)


def unavailable(reason: str) -> None:
    """Skip with the reason, or fail under CI=true (CI must never skip the Slurm tests silently)."""
    msg = f"Slurm test bed unavailable: {reason}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def slurm_testbed():
    """The running test bed (see the module docstring). Stops what it started at session end."""
    try:
        tb = start()
    except TestbedError as e:
        unavailable(str(e))
    yield tb
    if os.environ.get("AIRAVATA_TESTBED_KEEP") != "1":
        tb.stop()
