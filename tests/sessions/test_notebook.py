"""notebooks/sessions.ipynb runs top to bottom under papermill (as CI runs it)."""
from __future__ import annotations

import json

from .conftest import ROOT, read_nb


def test_sessions_notebook_runs(papermill, tmp_path):
    out = tmp_path / "sessions-out.ipynb"
    result = papermill(ROOT / "notebooks" / "sessions.ipynb", out)
    assert result.status == "ok", result.error
    text = json.dumps(read_nb(out))
    assert "restored: 2 5 0.1" in text and "loss = 0.025" in text and "replayed session 'demo'" in text
