"""notebooks/fanout.ipynb runs top to bottom under papermill on ``local`` (as CI runs it)."""
from __future__ import annotations

from pathlib import Path

from tests.demo_notebooks import run_demo

ROOT = Path(__file__).resolve().parents[2]


def test_fanout_notebook_runs_under_papermill(tmp_path):
    nb, text = run_demo("fanout.ipynb", tmp_path, timeout=600)
    assert "hits match the injected signals: True" in text
    assert "every world size saw all 1024 samples exactly once" in text
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pngs) >= 2  # the hits plot and the scale plot
