"""The test bed's applications: Debian's Lmod with a small module tree, on the loopback SSH host.

An addition to the sshd + Slurm test bed (``tests/slurm/testbed.py``), kept in its own module so
that the two merge independently. It installs ``lmod`` (apt, as the Slurm test bed installs its
packages) and writes real Lua modulefiles into ``/opt/airavata-testbed/modulefiles``, a directory
listed in ``/etc/lmod/modulespath`` so that every login shell of the test user sees it:

- ``psi4/1.8`` and ``psi4/1.9`` (1.8 marked default by ``.modulerc.lua``), ``cuda/12.4``, and
  ``gromacs/2024.1``, which lives in a hierarchy that only ``cuda`` adds to ``MODULEPATH``
  (``module spider gromacs/2024.1`` says "You will need to load all module(s) ... cuda/12.4").
- ``qchem/6.1``, whose modulefile says ``prereq("cuda")``: loading it without cuda fails.
- ``mpich/4.2`` and ``openmpi/4.1``, whose modulefile says ``conflict("mpich")``.

Each application is a small script the module puts on ``PATH`` that prints its name and version.
Everything is root-owned, world-readable, and written only when its content changes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.slurm.testbed import TestbedError, _locked, _run

ROOT = Path("/opt/airavata-testbed")
MODULEFILES = ROOT / "modulefiles"  # the tree every login shell sees
HIERARCHY = ROOT / "modulefiles-cuda"  # added to MODULEPATH by cuda/12.4
BENCH_TREE = ROOT / "modulefiles-bench"  # filled only while the benchmark runs
APPS = ROOT / "apps"
MODULESPATH = Path("/etc/lmod/modulespath")
LMOD_INIT = Path("/etc/profile.d/lmod.sh")

APPLICATIONS = {  # name/version -> (description, prerequisite line or "")
    "psi4/1.8": ("Psi4 quantum chemistry", ""),
    "psi4/1.9": ("Psi4 quantum chemistry", ""),
    "cuda/12.4": ("NVIDIA CUDA toolkit", ""),
    "qchem/6.1": ("Q-Chem quantum chemistry (needs cuda)", 'prereq("cuda")'),
    "mpich/4.2": ("MPICH MPI library", ""),
    "openmpi/4.1": ("Open MPI library", 'conflict("mpich")'),
}


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)


def modulefile(name: str, version: str, description: str, extra: str = "") -> str:
    """A Lua modulefile that puts the application's bin directory on PATH."""
    return (
        f'help([[{description}, version {version} (airavata-magic test bed)]])\n'
        f'whatis("Description: {description}")\n'
        f'whatis("Version: {version}")\n'
        f'{extra}\n'
        f'prepend_path("PATH", "{APPS}/{name}-{version}/bin")\n'
    )


def _app_script(name: str, version: str) -> None:
    _write(APPS / f"{name}-{version}" / "bin" / name, f"#!/bin/sh\necho {name} {version}\n", 0o755)


def ensure_lmod() -> None:
    """apt-get install lmod when missing (no daemon: nothing to keep from starting)."""
    if LMOD_INIT.exists() and Path("/usr/share/lmod/lmod/libexec/lmod").exists():
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "lmod"]
    try:
        _run(argv, "installing lmod", env=env)
    except TestbedError:  # a fresh machine has no package lists yet
        _run(["apt-get", "update", "-q"], "apt-get update", env=env)
        _run(argv, "installing lmod", env=env)


def ensure_module_tree() -> None:
    """Write the modulefiles and application scripts, and list the tree in modulespath."""
    for full, (desc, extra) in APPLICATIONS.items():
        name, version = full.split("/")
        _write(MODULEFILES / name / f"{version}.lua", modulefile(name, version, desc, extra))
        _app_script(name, version)
    _write(MODULEFILES / "psi4" / ".modulerc.lua", 'module_version("psi4/1.8", "default")\n')
    cuda = MODULEFILES / "cuda" / "12.4.lua"
    _write(cuda, cuda.read_text() + f'prepend_path("MODULEPATH", "{HIERARCHY}")\n')
    _write(HIERARCHY / "gromacs" / "2024.1.lua", modulefile("gromacs", "2024.1", "GROMACS molecular dynamics (GPU build)"))
    _app_script("gromacs", "2024.1")
    for d in (ROOT, APPS):
        os.chmod(d, 0o755)
    lines = MODULESPATH.read_text().splitlines()
    wanted = [str(MODULEFILES), str(BENCH_TREE)]  # a missing directory is skipped by lmod.sh
    if not all(w in lines for w in wanted):
        _write(MODULESPATH, "\n".join([ln for ln in lines if ln not in wanted] + wanted) + "\n")


def ensure_applications() -> None:
    """Install Lmod and the module tree (idempotent; under the test bed's lock)."""
    if os.geteuid() != 0:
        raise TestbedError("the applications test bed must run as root (it installs lmod)")
    with _locked():
        ensure_lmod()
        ensure_module_tree()


def login_shell(user: str, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` in a login shell of ``user`` (where ``module`` exists), for checks in tests."""
    return subprocess.run(["runuser", "-l", user, "-c", command], capture_output=True, text=True, timeout=60)


def write_bench_tree(count: int) -> None:
    """``count`` modulefiles (name/version pairs) in the bench tree; see ``remove_bench_tree``."""
    shutil.rmtree(BENCH_TREE, ignore_errors=True)
    for i in range(count):
        name, version = f"benchapp{i // 5:03d}", f"{i % 5 + 1}.0"
        _write(BENCH_TREE / name / f"{version}.lua", modulefile(name, version, f"bench application {i // 5}"))


def remove_bench_tree() -> None:
    shutil.rmtree(BENCH_TREE, ignore_errors=True)
