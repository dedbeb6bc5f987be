"""Fixtures of the browser suite: Debian's Chromium, one JupyterLab server and one page per module.

Chromium comes from Debian (``apt-get install chromium``), launched by Playwright through
``executable_path``: Playwright's own browser downloads are not reachable from these machines.
As root the fixture installs it when missing; otherwise the suite is skipped with the reason, and
under ``CI=true`` a missing browser fails the run instead (CI must never skip it silently).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from .lab import CHROMIUM, CHROMIUM_ARGS, ROOT, Lab, LabServer

APT_PACKAGES = ["chromium", "fonts-dejavu-core", "fonts-liberation"]

# The profile the server's kernels see: one preset on the embedded `local` kind (no cluster
# needed), for `airavata-magic kernelspec install --runtime labrt`.
PROFILE = "runtimes:\n  labrt: {resource: local, walltime: 30}\n"


def write_notebook(path: Path, sources: list[str]) -> None:
    """A notebook of code cells on the ``python3`` kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _unavailable(reason: str) -> None:
    msg = f"browser suite unavailable: {reason}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def ensure_chromium() -> str:
    """The path of Debian's Chromium, installed with apt when missing and we are root."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if os.geteuid() != 0:
        _unavailable(f"{CHROMIUM} is missing and installing it needs root (apt-get install chromium)")
    install = ("install", "-y", "-q", *APT_PACKAGES)  # with recommends: as tried here
    r = _apt(*install)
    if r.returncode != 0:  # a fresh machine has no package lists yet
        _apt("update", "-q")
        r = _apt(*install)
    if r.returncode != 0 or not os.path.exists(CHROMIUM):
        _unavailable(f"apt-get install chromium failed: {(r.stderr or r.stdout).strip()[-500:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="module")
def lab_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """A JupyterLab server serving copies of notebooks/*.ipynb, plus the notebooks that the test
    module lists in ``LAB_NOTEBOOKS`` (file name -> code cells)."""
    server = LabServer(tmp_path_factory.mktemp("lab"), sorted((ROOT / "notebooks").glob("*.ipynb")), PROFILE)
    for name, sources in getattr(request.module, "LAB_NOTEBOOKS", {}).items():
        write_notebook(server.root / name, sources)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lab(chromium: str, lab_server: LabServer) -> Iterator[Lab]:
    """One Chromium (headless, Debian's) with one page on the module's Lab server."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        lab = Lab(page, lab_server)
        lab.open()
        yield lab
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed scenario leaves out/browser/FAILED-<test>.png: what the page showed."""
    yield
    if request.node.stash.get(_FAILED, False) and "lab" in request.fixturenames:
        lab = request.getfixturevalue("lab")
        lab.shot(f"FAILED-{request.node.name}")
