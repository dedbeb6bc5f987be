"""notebooks/data.ipynb runs top to bottom under papermill on the local runtime (as CI runs it)."""
from __future__ import annotations

from pathlib import Path

from tests.demo_notebooks import run_demo

ROOT = Path(__file__).resolve().parents[2]


def test_data_notebook_runs_under_papermill(tmp_path):
    nb, text = run_demo("data.ipynb", tmp_path)
    assert "copied 21 file(s)" in text and "sha256 verified" in text
    assert "rows on the runtime: 1000" in text and "write bits: 0o0" in text
    assert "pulled 1000 rows; scaled column equal: True" in text
    assert (tmp_path / "lab-storage" / "inputs" / "parts" / "part 7.txt").read_text() == "7" * 1000
    assert (tmp_path / "copy-back.csv").read_text().startswith("sample,value")
