"""``airavata-magic storage|copy|dataset`` as a user runs them: real processes, real sshd."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slurm


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airavata_magic.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def env(bed, home):
    from .conftest import remote

    remote(bed, "rm -rf am-cli && mkdir -p am-cli")
    return dict(os.environ, AIRAVATA_MAGIC_HOME=str(home), AIRAVATA_MAGIC_PROFILE=str(bed.profile))


def test_storage_verbs(env, bed):
    p = cli("storage", "register", "--name", "clis", "--location", "hpc:~/am-cli", env=env)
    assert p.returncode == 0 and "storage 'clis' registered (resource" in p.stdout
    listing = cli("storage", "list", env=env).stdout
    assert "clis" in listing and "hpc:~/am-cli" in listing
    assert cli("storage", "ls", "clis", env=env).stdout.strip() == "empty"
    bad = cli("storage", "ls", "nosuch", env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no storage named 'nosuch'")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_copy_shows_tqdm_on_stderr_and_verifies(env, tmp_path):
    (tmp_path / "f.bin").write_bytes(os.urandom(2 << 20))
    p = cli("copy", f"local:{tmp_path / 'f.bin'}", "clis:f.bin", "--verify", env=env)
    assert p.returncode == 0, p.stderr
    assert "sha256 verified" in p.stdout and "2.00M/2.00M" in p.stderr and "1/1 files" in p.stderr  # final bar
    listing = cli("storage", "ls", "clis", env=env).stdout
    assert "f.bin" in listing and "2097152" in listing
    bad = cli("copy", str(tmp_path), "clis:x", env=env)
    assert bad.returncode == 2 and "add --recursive" in bad.stderr


def test_dataset_verbs(env):
    p = cli("dataset", "register", "--name", "cli-ds", "--location", "clis:f.bin", "--after-download",
            "echo a; echo b", "--private", env=env)
    assert p.returncode == 0, p.stderr
    assert "cli-ds" in cli("dataset", "list", env=env).stdout
    assert '"after_download": "echo a; echo b"' in cli("dataset", "show", "cli-ds", env=env).stdout
    bad = cli("dataset", "register", "--name", "x", "--location", "clis:f.bin", "--sha256", "xyz", env=env)
    assert bad.returncode == 2 and "--sha256 must be 64 hex digits" in bad.stderr
    assert cli("dataset", "remove", "cli-ds", env=env).returncode == 0
    assert "cli-ds" not in cli("dataset", "list", env=env).stdout


def test_runtime_verbs_against_an_ssh_runtime(env, bed, manager, tmp_path):
    from .conftest import remote

    manager.request("cli_rt", resource="ws")  # recorded in the same home the commands below use
    manager.wait("cli_rt", timeout=120)
    try:
        (tmp_path / "in.txt").write_text("to the runtime")
        p = cli("copy", str(tmp_path / "in.txt"), "cli_rt:am-cli-rt/in.txt", "--verify", env=env)
        assert p.returncode == 0, p.stderr
        assert remote(bed, "cat am-cli-rt/in.txt") == "to the runtime"
        p = cli("storage", "mount", "clis", "--runtime", "cli_rt", "--as", "am-cli-rt/linked", env=env)
        assert p.returncode == 0 and p.stdout.strip() == f"/home/{bed.user}/am-cli-rt/linked"
        assert remote(bed, "readlink am-cli-rt/linked") == f"/home/{bed.user}/am-cli\n"
        assert cli("dataset", "register", "--name", "cli-tree", "--location", "clis:", env=env).returncode == 0
        p = cli("dataset", "load", "cli-tree", "--runtime", "cli_rt", env=env)
        assert p.returncode == 0, p.stderr
        path = p.stdout.strip().splitlines()[-1]
        assert path.startswith(f"/home/{bed.user}/.airavata-magic/datasets/cli_tree-")
        assert "f.bin" in remote(bed, f"ls {path}/am-cli")
    finally:
        manager.stop("cli_rt")
