"""notebooks/models.ipynb, executed by papermill on the local runtime as CI does."""
from __future__ import annotations

import re

from tests.demo_notebooks import run_demo


def test_models_notebook_runs_under_papermill(tmp_path):
    nb, text = run_demo("models.ipynb", tmp_path, params={"workdir": str(tmp_path / "demo")}, timeout=900)
    assert "published model" in text and "digits-cnn-trained" in text
    ft_first, scratch_first = map(float, re.search(r"starts at validation accuracy ([\d.]+) \(from scratch it "
                                                   r"started at ([\d.]+)\)", text).groups())
    assert ft_first > 0.9 and ft_first > scratch_first
    assert float(re.search(r"accuracy ([\d.]+) on 200 inputs", text).group(1)) > 0.9
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the two task plots and the comparison
