"""Fixtures for the Python API tests: a private AIRAVATA_MAGIC_HOME for this process's manager
(``airavata_magic.get_manager()``), and a subprocess environment that shares it."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

import airavata_magic
from tests.conftest import stop_leftover_runtimes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api_home(tmp_path_factory) -> Iterator[Path]:
    """This process's API calls use a fresh home; every runtime left in it is stopped after."""
    home = tmp_path_factory.mktemp("api-home")
    old = os.environ.get("AIRAVATA_MAGIC_HOME")
    os.environ["AIRAVATA_MAGIC_HOME"] = str(home)
    airavata_magic._manager = None  # the next get_manager() reads the new home
    try:
        yield home
    finally:
        if airavata_magic._manager is not None:
            airavata_magic._manager.close()
        airavata_magic._manager = None
        if old is None:
            os.environ.pop("AIRAVATA_MAGIC_HOME", None)
        else:
            os.environ["AIRAVATA_MAGIC_HOME"] = old
        stop_leftover_runtimes(home)


@pytest.fixture
def script_env(magic_home: Path) -> dict[str, str]:
    """Environment of a script run as a child process, with the test's private home."""
    env = dict(os.environ)
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    env["AIRAVATA_MAGIC_HOME"] = str(magic_home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
