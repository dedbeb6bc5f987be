"""The task-side interpreter for fan-out and scale tests on the Slurm test bed.

Array tasks and ranks run as the test bed's user with a venv built from ``/usr/bin/python3``
(the default python here lives under /root, unreadable to that user; TESTBED.md). It holds what
the example algorithm and the scale script import: numpy, pandas, h5py (+ hdf5plugin for the
compressed files setigen writes) and the CPU torch wheel. Built once, cached beside the test
bed's kernel venv, world-readable.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path("/var/cache/airavata-testbed")
VENV = CACHE / "fanout-venv"
PACKAGES = ["numpy", "pandas", "h5py", "hdf5plugin", "torch==2.13.0"]
MARKER = VENV / ".airavata-packages"


def ensure_task_venv() -> str:
    """The venv's python (built on first use; later calls reuse it). Raises RuntimeError."""
    python = VENV / "bin" / "python"
    want = "\n".join(PACKAGES)
    if python.exists() and MARKER.exists() and MARKER.read_text() == want:
        return str(python)
    CACHE.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE, 0o755)
    shutil.rmtree(VENV, ignore_errors=True)
    steps = [
        ["/usr/bin/python3", "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "-q", *PACKAGES],
        ["chmod", "-R", "a+rX", str(VENV)],
    ]
    for argv in steps:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
        if r.returncode:
            raise RuntimeError(f"building the task venv: {' '.join(argv[:4])} failed: {r.stderr.strip()[-600:]}")
    MARKER.write_text(want)
    os.chmod(MARKER, 0o644)
    return str(python)


if __name__ == "__main__":
    print(ensure_task_venv())
