"""notebooks/models.ipynb, executed by papermill on the local runtime as CI does."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat

from .conftest import ROOT


def test_models_notebook_runs_under_papermill(tmp_path):
    out = tmp_path / "models.ipynb"
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": str(tmp_path / "home")}
    for key in ("AIRAVATA_MAGIC_PROFILE", "AIRAVATA_MAGIC_HUB"):
        env.pop(key, None)
    r = subprocess.run([sys.executable, "-m", "papermill", "-k", "python3", str(ROOT / "notebooks" / "models.ipynb"),
                        str(out), "-p", "workdir", str(tmp_path / "demo")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "published model" in text and "digits-cnn-trained" in text
    ft_first, scratch_first = map(float, re.search(r"starts at validation accuracy ([\d.]+) \(from scratch it "
                                                   r"started at ([\d.]+)\)", text).groups())
    assert ft_first > 0.9 and ft_first > scratch_first
    assert float(re.search(r"accuracy ([\d.]+) on 200 inputs", text).group(1)) > 0.9
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the two task plots and the comparison
