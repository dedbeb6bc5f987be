"""Fixtures of the applications area: the Slurm test bed plus Lmod and its module tree.

``apps_testbed`` is the Slurm test bed (``tests/slurm/testbed.py``) with Lmod installed and the
module tree of ``testbed_apps.py`` written; ``profile_file`` is a private copy of a commented
profile for that test bed (tests edit it).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.slurm.testbed import TestbedError, slurm_testbed, unavailable  # noqa: F401  (session fixture)

from . import testbed_apps

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def apps_testbed(slurm_testbed):  # noqa: F811
    try:
        testbed_apps.ensure_applications()
    except TestbedError as e:
        unavailable(str(e))
    return slurm_testbed


def render(template: str, tb) -> str:
    """A golden profile with this test bed's values filled in."""
    return (template.replace("@IDENTITY@", str(tb.identity_file)).replace("@KNOWN_HOSTS@", str(tb.known_hosts))
            .replace("@PYTHON@", tb.python).replace("@USER@", tb.user).replace("@PORT@", str(tb.port)))


@pytest.fixture
def profile_file(apps_testbed, tmp_path, monkeypatch) -> Path:
    """A commented profile (golden/profile_before.yml) for the test bed, in a private temp dir;
    ``$AIRAVATA_MAGIC_HOME`` is private to the test too (cache, registrations)."""
    p = tmp_path / "cybershuttle.yml"
    p.write_text(render((GOLDEN / "profile_before.yml").read_text(), apps_testbed))
    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRAVATA_MAGIC_PROFILE", raising=False)
    return p


@pytest.fixture
def env_for(tmp_path):
    """Environment for a notebook kernel or CLI subprocess using ``profile_file``."""
    def make(profile: Path) -> dict[str, str]:
        return {"AIRAVATA_MAGIC_PROFILE": str(profile), "AIRAVATA_MAGIC_HOME": os.environ["AIRAVATA_MAGIC_HOME"]}
    return make


@pytest.fixture(scope="session")
def accounting_testbed(apps_testbed):
    """The test bed with Slurm accounting (slurmdbd + MariaDB): ``sacct`` has real jobs."""
    from . import testbed_accounting

    try:
        testbed_accounting.ensure_accounting(apps_testbed.node)
    except TestbedError as e:
        unavailable(str(e))
    return apps_testbed
