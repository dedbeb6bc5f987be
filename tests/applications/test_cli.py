"""``airavata-magic application ...`` and ``compute list|usage`` as a user types them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airavata_magic.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT)


def test_application_verbs(profile_file, env_for):
    env = env_for(profile_file)
    p = cli("application", "list", "--resource", "hpc", "--search", "cuda", env=env)
    assert p.returncode == 0, p.stderr
    assert "cuda" in p.stdout and "12.4" in p.stdout and "NVIDIA CUDA toolkit" in p.stdout
    p = cli("application", "show", "qchem", "--resource", "hpc", env=env)
    assert p.returncode == 0 and "prerequisites: cuda" in p.stdout
    p = cli("application", "add", "psi4/1.9", "--runtime", "hpc_gpu", env=env)
    assert p.returncode == 0 and "runtimes.hpc_gpu.setup" in p.stdout
    before = profile_file.read_text()
    p = cli("application", "add", "psi4/1.8", "--runtime", "hpc_gpu", env=env)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "error: runtimes.hpc_gpu.setup already loads psi4/1.9; one version of a module at a time: "
        "remove that line first to use psi4/1.8"]
    assert profile_file.read_text() == before
    p = cli("application", "register", "tool", "--command", "relative/path", "--resource", "hpc", env=env)
    assert p.returncode == 2 and p.stderr.startswith("error: --command 'relative/path' must be an absolute path")


def test_compute_list_and_execute_still_there(profile_file, env_for):
    env = env_for(profile_file)
    p = cli("compute", "list", env=env)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert any(line.split()[:2] == ["hpc", "slurm"] and " gpu " in f" {line} " for line in lines)
    assert any(line.split()[:2] == ["ws", "ssh"] for line in lines)
    p = cli("compute", "execute", "echo hi", "--resource", "ws", env=env)
    assert p.returncode == 0 and "hi" in p.stdout


def test_usage_bad_input(profile_file, env_for):
    env = env_for(profile_file)
    p = cli("compute", "usage", "--since", "yesterday", env=env)
    assert p.returncode == 2 and p.stderr.strip() == \
        "error: invalid --since 'yesterday': use a number and h, d or w, e.g. 12h, 7d, 2w"
    p = cli("compute", "usage", "--resource", "ws", env=env)
    assert p.returncode == 2 and "ws is an ssh resource: usage comes from Slurm accounting" in p.stderr
