"""notebooks/data.ipynb runs top to bottom under papermill on the local runtime (as CI runs it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def test_data_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "data.ipynb"
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": str(tmp_path / "home")}
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    r = subprocess.run([sys.executable, "-m", "papermill", "-k", "python3", str(ROOT / "notebooks" / "data.ipynb"),
                        str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "copied 21 file(s)" in text and "sha256 verified" in text
    assert "rows on the runtime: 1000" in text and "write bits: 0o0" in text
    assert "pulled 1000 rows; scaled column equal: True" in text
    assert (tmp_path / "lab-storage" / "inputs" / "parts" / "part 7.txt").read_text() == "7" * 1000
    assert (tmp_path / "copy-back.csv").read_text().startswith("sample,value")
