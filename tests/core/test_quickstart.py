"""The quickstart notebook, executed by papermill exactly as the README's demo command does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_under_papermill(tmp_path):
    out = tmp_path / "quickstart.ipynb"
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": str(tmp_path / "home")}
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    r = subprocess.run([sys.executable, "-m", "papermill", "-k", "python3", str(ROOT / "notebooks" / "quickstart.ipynb"),
                        str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "runtime 'demo' is ready" in text
    assert "cells run on 'demo'" in text
    assert "the notebook kernel saw 285" in text
    assert "the cell failed with ZeroDivisionError" in text
    assert "cells run locally again" in text
    pids = [line.split()[3] for line in text.splitlines() if line.startswith("running in process")]
    back = [line.split()[-1] for line in text.splitlines() if line.startswith("back in the notebook kernel")]
    assert pids and back and pids[0] != back[0]
