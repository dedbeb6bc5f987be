"""Fixtures of the hub area: digits data, a hub folder, trained tasks shared across tests, an
interpreter other Unix users (and Slurm jobs) can run, and two real users for visibility.

Everything here is real: scikit-learn's bundled digits, torch on CPU, local processes, and the
loopback sshd + Slurm test bed (``slurm_testbed``, re-exported below).
"""
from __future__ import annotations

import grp
import hashlib
import importlib.util
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.slurm.testbed import CACHE, slurm_testbed  # noqa: F401  (session fixture, re-exported)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "digits-cnn"
USERS = ("hubalice", "hubbob", "hubcarol")
GROUP = "hubshare"  # hubalice and hubbob are members, hubcarol is not


def _write_splits():
    spec = importlib.util.spec_from_file_location("digits_data", ROOT / "examples" / "digits_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_splits


def public_tmp(prefix: str) -> Path:
    """A folder under /tmp that other users can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="package", autouse=True)
def hub_home() -> Iterator[Path]:
    """A private AIRAVATA_MAGIC_HOME for this area (task records, runtime records), set for the
    area's tests only and put back after them, with the process's runtime manager."""
    import airavata_magic

    home = Path(tempfile.mkdtemp(prefix="hub-home-"))
    old = os.environ.get("AIRAVATA_MAGIC_HOME")
    had_manager = airavata_magic._manager is not None
    os.environ["AIRAVATA_MAGIC_HOME"] = str(home)
    yield home
    from tests.conftest import stop_leftover_runtimes

    if not had_manager and airavata_magic._manager is not None:  # ours: rooted in this home
        airavata_magic._manager.close()
        airavata_magic._manager = None
    stop_leftover_runtimes(home)
    if old is None:
        os.environ.pop("AIRAVATA_MAGIC_HOME", None)
    else:
        os.environ["AIRAVATA_MAGIC_HOME"] = old
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="package")
def digits() -> Iterator[dict[str, Path]]:
    """Two splits of the digits: ``base`` (seed 0) and ``shifted`` (seed 1), readable by all."""
    out = public_tmp("hub-digits-")
    write = _write_splits()
    splits = {"base": write(out / "base", seed=0), "shifted": write(out / "shifted", seed=1)}
    subprocess.run(["chmod", "-R", "a+rX", str(out)], check=True)
    yield splits
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture(scope="package")
def hub_dir() -> Iterator[Path]:
    """A hub folder shared by every user (mode 1777, as a lab would set it up), named by
    ``$AIRAVATA_MAGIC_HUB`` for this area's tests."""
    path = public_tmp("hub-root-")
    os.chmod(path, 0o1777)
    os.environ["AIRAVATA_MAGIC_HUB"] = str(path)
    yield path
    os.environ.pop("AIRAVATA_MAGIC_HUB", None)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="package")
def hub(hub_dir):
    from airavata_magic.hub import Hub

    return Hub.from_profile()


@pytest.fixture(scope="package")
def trained(hub, digits) -> dict:
    """A train task run to the end on ``local`` (8 epochs of the CNN from scratch), shared by
    the tests that fine-tune from it, publish it or run its model."""
    from airavata_magic.hub import tasks

    d = digits["base"]
    t = tasks.new("digits-train", "train", str(EXAMPLE), str(d / "train.npz"), str(d / "val.npz"),
                  test_data=str(d / "test.npz"), runtime="local", params={"epochs": 8, "learning_rate": 0.05})
    assert t.state == "SCHEDULED"
    seen: list[tuple[str, int]] = []
    # polled finely: 8 epochs of this small net take ~0.35 s on a fast machine, so the default
    # 0.5 s poll could see only "none yet" and "all 8" (CI saw exactly that)
    done = tasks.wait(t.id, timeout=600, on_update=lambda task, m: seen.append((task.state, len(m))), poll=0.02)
    return {"task": done, "updates": seen, "metrics": tasks.metrics(done)}


def _same_minor(python: str) -> bool:
    out = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    return out.stdout.strip() == str(tuple(sys.version_info[:2]))


def _others_can_import(python: Path) -> bool:
    """Whether another user can run ``python`` and import torch and this package with it."""
    r = subprocess.run(["runuser", "-u", "nobody", "--", str(python), "-c", "import torch, airavata_magic.hub"],
                       capture_output=True, timeout=120)
    return r.returncode == 0


def make_shared_python() -> Path:
    """An interpreter any user (and Slurm jobs of the test user) can run, with torch, numpy,
    pandas and this package: a venv from /usr/bin/python3 whose .pth points at this checkout's
    .venv, so the test bed shares the one torch install instead of a second one. Where other users
    cannot read this checkout (a clone under /root), a venv of its own is installed once instead
    (from the same local wheels) with a world-readable copy of the package source."""
    if not Path("/usr/bin/python3").exists() or not _same_minor("/usr/bin/python3"):
        raise RuntimeError("the hub's cross-user tests need /usr/bin/python3 of the same minor version as this venv")
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    sp = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    key = hashlib.sha256(f"{sp}|{ROOT}".encode()).hexdigest()[:12]
    venv = CACHE / f"hub-venv-{key}"
    python = venv / "bin" / "python"
    if not python.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
        (venv / "lib" / minor / "site-packages" / "airavata_shared.pth").write_text(f"{sp}\n{ROOT}\n")
        subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    if _others_can_import(python):
        return python
    own = CACHE / "hub-venv-own"
    python = own / "bin" / "python"
    if not (own / ".complete").exists():
        shutil.rmtree(own, ignore_errors=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(own)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "safetensors", "numpy", "pandas",
                        "ipykernel", "fsspec", "pyyaml", "platformdirs"], check=True, timeout=1800)
        (own / ".complete").touch()
    src = own / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.copytree(ROOT / "airavata_magic", src / "airavata_magic", ignore=shutil.ignore_patterns("__pycache__"))
    (own / "lib" / minor / "site-packages" / "airavata_src.pth").write_text(f"{src}\n")
    subprocess.run(["chmod", "-R", "a+rX", str(own)], check=True)
    if not _others_can_import(python):
        raise RuntimeError(f"{python} cannot import torch and airavata_magic as another user")
    return python


@pytest.fixture(scope="package")
def shared_python() -> Path:
    """See ``make_shared_python``."""
    try:
        return make_shared_python()
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def unix_users() -> dict[str, pwd.struct_passwd]:
    """Three real Unix users and a group, created once (idempotent)."""
    if os.geteuid() != 0:
        pytest.fail("the visibility tests create Unix users: run them as root (CI does)")
    try:
        grp.getgrnam(GROUP)
    except KeyError:
        subprocess.run(["groupadd", GROUP], check=True)
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-m", user], check=True)
    for user in USERS[:2]:
        subprocess.run(["usermod", "-a", "-G", GROUP, user], check=True)
    if shutil.which("setfacl") is None:  # sharing with named users is done with POSIX ACLs
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "acl"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, check=True, capture_output=True)
    return {u: pwd.getpwnam(u) for u in USERS}
