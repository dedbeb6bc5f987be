"""The quickstart notebook, executed by papermill exactly as the README's demo command does."""
from __future__ import annotations

from pathlib import Path

from tests.demo_notebooks import run_demo

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_under_papermill(tmp_path):
    nb, text = run_demo("quickstart.ipynb", tmp_path)
    assert "runtime 'demo' is ready" in text
    assert "cells run on 'demo'" in text
    assert "the notebook kernel saw 285" in text
    assert "the cell failed with ZeroDivisionError" in text
    assert "cells run locally again" in text
    pids = [line.split()[3] for line in text.splitlines() if line.startswith("running in process")]
    back = [line.split()[-1] for line in text.splitlines() if line.startswith("back in the notebook kernel")]
    assert pids and back and pids[0] != back[0]
