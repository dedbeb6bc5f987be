"""notebooks/sessions.ipynb runs top to bottom under papermill (as CI runs it)."""
from __future__ import annotations

import json

from .conftest import ROOT, read_nb


def test_sessions_notebook_runs(papermill, tmp_path):
    """The whole notebook; replay and the sweep each show ONE display updated in place
    (progress.Progress), and the papermill run reports its cells to the caller as they finish."""
    out = tmp_path / "sessions-out.ipynb"
    seen: list[tuple[int, int]] = []
    result = papermill(ROOT / "notebooks" / "sessions.ipynb", out, on_cell=lambda d, t: seen.append((d, t)))
    assert result.status == "ok", result.error
    text = json.dumps(read_nb(out))
    assert "restored: 2 5 0.1" in text and "loss = 0.025" in text and "replayed session 'demo'" in text
    cells = [c for c in read_nb(out)["cells"] if c["cell_type"] == "code"]
    total = len(read_nb(out)["cells"])
    assert seen and seen[-1] == (total, total) and [d for d, _ in seen] == sorted(d for d, _ in seen)

    load = next(c for c in cells if "%session load demo" in "".join(c["source"]))
    shown = [o for o in load["outputs"] if o["output_type"] == "display_data"
             and o["data"]["text/plain"].startswith("replay session")]
    assert len(shown) == 1, shown  # one display, updated in place (nbclient applied the updates)
    assert shown[0]["data"]["text/plain"].startswith("replay session demo: 3 cells of 3 cells (100%)")
    sweep = next(c for c in cells if "sweep('demo-tpl'" in "".join(c["source"]))
    shown = [o for o in sweep["outputs"] if o["output_type"] == "display_data"
             and o["data"]["text/plain"].startswith("sweep")]
    assert len(shown) == 1 and shown[0]["data"]["text/plain"].startswith("sweep demo-tpl: 4 runs of 4 runs (100%)")
    assert "<progress" in shown[0]["data"]["text/html"]
