"""The command line mirrors the runtime magics; errors are one line and exit 2."""
from __future__ import annotations

import os
import subprocess
import sys


def cli(home, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": str(home)}
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    return subprocess.run([sys.executable, "-m", "airavata_magic.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=home)


def test_request_wait_list_stat_stop(tmp_path):
    r = cli(tmp_path, "request", "c1", "--resource", "local", "--cpus", "1", "--wait")
    assert r.returncode == 0, r.stderr
    assert "requested on local" in r.stdout and "c1: ready" in r.stdout
    r = cli(tmp_path, "runtimes")
    assert r.returncode == 0 and "c1" in r.stdout and "ready" in r.stdout
    r = cli(tmp_path, "stat", "c1")
    assert r.returncode == 0 and "kernel python" in r.stdout
    r = cli(tmp_path, "stop", "--all")
    assert r.returncode == 0 and "stopped" in r.stdout
    assert "stopped" in cli(tmp_path, "runtimes").stdout


def test_errors_are_one_line_with_exit_2(tmp_path):
    for args in (["request", "x", "--resource", "local", "--memory", "12Q"], ["stat", "ghost"],
                 ["request", "x"], ["stop"], ["authenticate", "nowhere"]):
        r = cli(tmp_path, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
