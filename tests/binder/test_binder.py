"""What Binder builds, built here without Docker: a fresh venv from binder/requirements.txt only,
then binder/postBuild, then every notebook in notebooks/ executed by papermill inside it.

The slowest test of the suite (a whole install from pip's cache, then two notebooks); it runs the
notebooks side by side to keep it short.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _run(argv: list[str], what: str, **kw) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{what} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


@pytest.mark.timeout(1200)
def test_binder_build_runs_every_notebook(tmp_path: Path) -> None:
    assert NOTEBOOKS, "notebooks/ has no notebook"
    venv, home, out = tmp_path / "venv", tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    # Binder's environment: only what binder/ says, in a home of its own (postBuild writes there).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "AIRAVATA_MAGIC", "PYTHON", "VIRTUAL_ENV", "IPYTHON"))}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    started = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], "creating the venv", env=env)
    _run([str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "--progress-bar", "off",
          "-r", "binder/requirements.txt"], "pip install -r binder/requirements.txt", cwd=ROOT, env=env,
         timeout=900)
    _run(["bash", "binder/postBuild"], "binder/postBuild", cwd=ROOT, env=env, timeout=120)
    spec = json.loads((home / ".local/share/jupyter/kernels/python3/kernel.json").read_text())
    assert Path(spec["argv"][0]).parent == venv / "bin", spec["argv"]  # the venv's python
    built = time.monotonic() - started

    runs = {nb: subprocess.Popen([str(venv / "bin" / "papermill"), "--log-level", "WARNING", "-k", "python3",
                                  str(nb), str(out / nb.name)], cwd=home, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for nb in NOTEBOOKS}
    for nb, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"papermill {nb.name} failed:\n{stderr[-4000:]}"
        done = nbformat.read(out / nb.name, as_version=4)
        errors = [o for c in done.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{nb.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        assert all(c.get("execution_count") for c in done.cells if c.cell_type == "code"), nb.name
    # the embedded runtime ran on the venv's Python (what %authenticate reports for `local`)
    quick = (out / "quickstart.ipynb").read_text()
    assert str(venv / "bin" / "python") in quick
    print(f"binder build {built:.0f} s, notebooks {time.monotonic() - started - built:.0f} s")
