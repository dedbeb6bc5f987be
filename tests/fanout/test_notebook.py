"""notebooks/fanout.ipynb runs top to bottom under papermill on ``local`` (as CI runs it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def test_fanout_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "fanout.ipynb"
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": str(tmp_path / "home")}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend shows the figures
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    r = subprocess.run([sys.executable, "-m", "papermill", "-k", "python3", str(ROOT / "notebooks" / "fanout.ipynb"),
                        str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "hits match the injected signals: True" in text
    assert "every world size saw all 1024 samples exactly once" in text
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) >= 2  # the hits plot and the scale plot
