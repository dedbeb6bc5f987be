"""Run a demo notebook of ``notebooks/`` under papermill on the ``local`` runtime, as CI and the
README's demo command do, and return its outputs as text (streams and text/plain results)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

ROOT = Path(__file__).resolve().parents[1]
# Settings of the developer's shell that would change what a demo does.
_UNSET = ("AIRAVATA_MAGIC_PROFILE", "AIRAVATA_MAGIC_HUB", "MPLBACKEND")


def run_demo(name: str, tmp_path: Path, *, params: dict[str, str] | None = None,
             timeout: float = 300) -> tuple[Any, str]:
    """(the executed notebook, all its output text); fails the test with papermill's stderr."""
    out = tmp_path / name
    env = {k: v for k, v in os.environ.items() if k not in _UNSET}
    env["AIRAVATA_MAGIC_HOME"] = str(tmp_path / "home")
    argv = [sys.executable, "-m", "papermill", "-k", "python3", str(ROOT / "notebooks" / name), str(out)]
    for key, value in (params or {}).items():
        argv += ["-p", key, value]
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    return nb, text
