"""Fixtures of the slurm area: the loopback sshd + Slurm test bed and backends on it.

Other areas use the test bed by re-exporting its fixture in their own conftest.py::

    from tests.slurm.testbed import slurm_testbed  # noqa: F401
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from airavata_magic.backends.slurm import SlurmBackend
from airavata_magic.backends.ssh import SshBackend
from airavata_magic.profile import load_profile

from .kernel_helpers import Started, stop_quietly
from .testbed import slurm_testbed  # noqa: F401  (session fixture, re-exported)


@pytest.fixture(scope="session")
def testbed_profile(slurm_testbed):
    return load_profile(str(slurm_testbed.profile))


@pytest.fixture(scope="session")
def hpc(testbed_profile, tmp_path_factory) -> Iterator[SlurmBackend]:
    """The slurm backend of the test bed's ``hpc`` resource."""
    local = tmp_path_factory.mktemp("hpc-local")
    backend = SlurmBackend(testbed_profile.resources["hpc"], lambda name: Path(local))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def ws(testbed_profile, tmp_path_factory) -> Iterator[SshBackend]:
    """The ssh backend of the test bed's ``ws`` resource (the same host, no scheduler)."""
    local = tmp_path_factory.mktemp("ws-local")
    backend = SshBackend(testbed_profile.resources["ws"], lambda name: Path(local))
    yield backend
    backend.close()


@pytest.fixture
def started() -> Iterator[list[Started]]:
    """Runtimes a test started; stopped (scancel / kill) and their clients closed at the end."""
    items: list[Started] = []
    yield items
    for s in items:
        stop_quietly(s)


@pytest.fixture(scope="session")
def expiring(hpc):
    """A runtime with a 1-minute walltime, started early in the session so that the expiry test
    (``test_walltime.py``, run last) waits for Slurm's 60-90 s limit in parallel with the rest."""
    from .kernel_helpers import connect, request

    s = request(hpc, "expiring", walltime=1, cpus=1, memory=256)
    s.started_at = __import__("time").monotonic()
    connect(s)
    yield s
    stop_quietly(s)
