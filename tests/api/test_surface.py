"""The API surface: lazy names on the package, import cost, and the generated reference."""
from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import airavata_magic
from airavata_magic.api import docs

from .conftest import ROOT


def test_import_stays_light_and_every_api_name_resolves():
    code = ("import sys, airavata_magic as am\n"
            "heavy = [m for m in ('pandas', 'paramiko', 'kubernetes', 'zmq', 'IPython', 'nbformat') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert 'request_runtime' in dir(am) and 'session' in dir(am)\n"
            "print(am.request_runtime.__module__, am.session.__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["airavata_magic.api.runtimes", "airavata_magic.api.session"]


def test_api_names_are_not_shadowed_by_submodules():
    """Importing a submodule sets an attribute of the package: an API name equal to a submodule
    name must map to that very module, or `am.NAME` would change under the user."""
    for info in pkgutil.walk_packages(airavata_magic.__path__, "airavata_magic."):
        if info.name.count(".") == 1:
            importlib.import_module(info.name)
    for name, target in airavata_magic._API.items():
        module, _, attr = target.partition(":")
        expected = getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
        assert getattr(airavata_magic, name) is expected, name


def test_the_committed_reference_matches_the_docstrings():
    assert docs.main(["--check"]) == 0, "docs/api.md is out of date: python -m airavata_magic.api.docs"
    page = (ROOT / "docs" / "api.md").read_text()
    for name in airavata_magic._API:
        assert f"am.{name}" in page
