"""Slurm accounting for the test bed: MariaDB + slurmdbd, so that ``sacct`` reports real jobs.

An addition to the sshd + Slurm test bed (``tests/slurm/testbed.py``), in its own module. It
installs Debian's ``mariadb-server`` and ``slurmdbd`` (package scripts kept from starting
daemons), starts ``mariadbd`` on 127.0.0.1 and ``slurmdbd``, registers the cluster, appends the
accounting lines to ``slurm.conf`` and restarts ``slurmctld`` (its state is kept: running jobs
survive). The daemons are recorded with the test bed's own, so the last user of the test bed
stops them by PID like the rest.

Restarting slurmctld would disturb another session using the same test bed at that moment, so
it is done only while this process is the test bed's only user; otherwise the caller is told why
(the fixture skips then, or fails under ``CI=true``, where nothing else shares the machine).
Measured here: about 20 s to install the packages once, about 6 s to start and enable (below).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.slurm import testbed as tb
from tests.slurm.testbed import TestbedError, _run, _wait, apt_install

PACKAGES = ["mariadb-server", "slurmdbd"]
DB_DIR = Path("/var/lib/mysql")
DB_SOCKET = Path("/run/mysqld/mysqld.sock")
DB_PID = Path("/run/mysqld/airavata-testbed.pid")
DBD_CONF = Path("/etc/slurm/slurmdbd.conf")
DBD_PID = Path("/run/slurm/slurmdbd.pid")
CTL_PID = Path("/run/slurm/slurmctld.pid")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# -- accounting (tests/applications/testbed_accounting.py) --"


def accounting_enabled() -> bool:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    return "accounting_storage/slurmdbd" in out


def ensure_packages() -> None:
    if Path("/usr/sbin/slurmdbd").exists() and Path("/usr/sbin/mariadbd").exists():
        return
    apt_install(PACKAGES, "mariadb-server and slurmdbd")


def _sql(statement: str) -> str:
    return _run(["mariadb", "--socket", str(DB_SOCKET), "-N", "-e", statement], "MariaDB", timeout=30)


def start_mariadb(started: list[int]) -> None:
    if tb._read_pid(DB_PID) and DB_SOCKET.exists():
        return
    if not (DB_DIR / "mysql").is_dir():
        _run(["mariadb-install-db", "--user=mysql", f"--datadir={DB_DIR}", "--skip-test-db"], "initialising MariaDB")
    Path("/run/mysqld").mkdir(exist_ok=True)
    shutil.chown("/run/mysqld", "mysql", "mysql")
    log = tb.STATE / "mariadb.log"
    subprocess.Popen(["/usr/sbin/mariadbd", "--user=mysql", f"--datadir={DB_DIR}", f"--socket={DB_SOCKET}",
                      f"--pid-file={DB_PID}", "--bind-address=127.0.0.1", "--port=3306", f"--log-error={log}"],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    _wait("mariadbd pid file", lambda: tb._read_pid(DB_PID), 60, log)
    started.append(tb._read_pid(DB_PID))
    _wait("MariaDB answering", lambda: _sql("SELECT 1").strip() == "1", 60, log)


def start_slurmdbd(node: str, started: list[int]) -> None:
    if tb._read_pid(DBD_PID):
        return
    password = secrets.token_hex(16)
    _sql(f"CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '{password}'; "
         f"ALTER USER 'slurm'@'localhost' IDENTIFIED BY '{password}'; "
         "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;")
    DBD_CONF.write_text(
        "# Written by the airavata-magic test bed (tests/applications/testbed_accounting.py).\n"
        f"AuthType=auth/munge\nDbdAddr=127.0.0.1\nDbdHost={node}\nSlurmUser=slurm\n"
        f"PidFile={DBD_PID}\nLogFile=/var/log/slurm/slurmdbd.log\n"
        "StorageType=accounting_storage/mysql\nStorageHost=localhost\nStorageUser=slurm\n"
        f"StoragePass={password}\nStorageLoc=slurm_acct_db\n")
    shutil.chown(DBD_CONF, "slurm", "slurm")
    os.chmod(DBD_CONF, 0o600)
    _run(["/usr/sbin/slurmdbd"], "starting slurmdbd")
    _wait("slurmdbd pid file", lambda: tb._read_pid(DBD_PID), 30, Path("/var/log/slurm/slurmdbd.log"))
    started.append(tb._read_pid(DBD_PID))
    _wait("slurmdbd on port 6819", lambda: tb._port_open("127.0.0.1", 6819), 30, Path("/var/log/slurm/slurmdbd.log"))


def enable_in_slurmctld(started: list[int]) -> None:
    """Register the cluster, add the accounting lines, restart slurmctld with its state kept."""
    conf = SLURM_CONF.read_text()
    cluster = next(line.split("=", 1)[1] for line in conf.splitlines() if line.startswith("ClusterName="))
    if MARK not in conf:  # first: sacctmgr reads it too, and talks only to a configured slurmdbd
        SLURM_CONF.write_text(conf + f"{MARK}\nAccountingStorageType=accounting_storage/slurmdbd\n"
                              "AccountingStorageHost=127.0.0.1\nAccountingStorageTRES=gres/gpu\n")
    if cluster not in _run(["sacctmgr", "-n", "-P", "list", "cluster", "format=Cluster"], "listing clusters"):
        _run(["sacctmgr", "-i", "add", "cluster", cluster], "registering the cluster in slurmdbd")
    old = tb._read_pid(CTL_PID)
    if old:
        os.kill(old, signal.SIGTERM)
        _wait("slurmctld to stop", lambda: not tb._pid_alive(old), 30)
    log = Path("/var/log/slurm/slurmctld.log")
    _run(["/usr/sbin/slurmctld"], "restarting slurmctld with accounting")  # no -c: jobs are kept
    _wait("slurmctld pid file", lambda: tb._read_pid(CTL_PID) not in (None, old), 30, log)
    started.append(tb._read_pid(CTL_PID))
    _wait("slurmctld (scontrol ping)", lambda: "UP" in subprocess.run(["scontrol", "ping"], capture_output=True,
                                                                     text=True).stdout, 30, log)
    _wait("accounting in slurmctld", accounting_enabled, 30, log)


def ensure_accounting(node: str, wait_s: float = 180) -> float:
    """Make ``sacct`` work on the running test bed; returns the seconds it took (0 if already on).
    Raises ``TestbedError`` when it cannot, or when another session shares the test bed now."""
    if os.geteuid() != 0:
        raise TestbedError("Slurm accounting in the test bed needs root (apt, mariadbd, slurmdbd)")
    t0 = time.monotonic()
    deadline = t0 + wait_s
    while True:  # the lock is released between looks, so that other sessions can leave
        with tb._locked():
            if not (tb._read_pid(CTL_PID) and tb._read_pid(Path("/run/slurm/slurmd.pid"))):
                raise TestbedError("the Slurm test bed is not running: start it (slurm_testbed) first")
            if accounting_enabled() and tb._read_pid(DBD_PID):
                return 0.0
            others = [pid for pid in tb._live_leases() if pid != os.getpid()]
            if not others:
                _enable(node)
                return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise TestbedError(f"accounting needs a slurmctld restart, and other sessions used the test bed for "
                               f"{wait_s:.0f} s (pids {', '.join(map(str, others))}); run again when they are done")
        time.sleep(0.5)


def _enable(node: str) -> None:
    ensure_packages()
    started: list[int] = []
    try:
        start_mariadb(started)
        start_slurmdbd(node, started)
        enable_in_slurmctld(started)
    finally:
        tb._record_daemons([p for p in started if p])
