"""Fixtures of the data area: the real sshd + Slurm test bed, a private AIRAVATA_MAGIC_HOME, a
loopback HTTP server for URL datasets, and one runtime per kind shared by a module's tests."""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from tests.slurm.testbed import slurm_testbed  # noqa: F401  (session fixture, re-exported)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Iterator[Path]:
    """A private AIRAVATA_MAGIC_HOME and no profile from the environment, for one module."""
    h = tmp_path_factory.mktemp("amhome")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRAVATA_MAGIC_HOME", str(h))
        mp.delenv("AIRAVATA_MAGIC_PROFILE", raising=False)
        yield h


@pytest.fixture(scope="module")
def bed(slurm_testbed, home) -> Iterator:  # noqa: F811
    """The test bed with its profile in force (resources hpc: slurm, ws: ssh)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRAVATA_MAGIC_PROFILE", str(slurm_testbed.profile))
        yield slurm_testbed


@pytest.fixture(scope="module")
def manager(home) -> Iterator:
    """A RuntimeManager on the module's home; every runtime it started is stopped at the end."""
    from airavata_magic.manager import RuntimeManager

    m = RuntimeManager(warn=lambda _t: None)
    yield m
    try:
        m.stop_all()
    finally:
        m.close()


@pytest.fixture(scope="module")
def www(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """(directory, base URL) of a loopback HTTP server (the test bed's 'web')."""
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(_QuietHandler, directory=str(root))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


def remote(bed, command: str) -> str:
    """Run a shell command as the test user on the test bed's sshd (OpenSSH, for checks)."""
    import subprocess

    p = subprocess.run(bed.ssh_argv(command), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def remote_home(bed) -> str:
    return os.path.expanduser(f"~{bed.user}")
