"""Fixtures of the fan-out area: the Slurm test bed with a task interpreter that has numpy,
pandas, h5py and torch; synthetic observations made with setigen; a private state directory.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


import pytest
import yaml

from tests.slurm.testbed import slurm_testbed  # noqa: F401  (session fixture, re-exported)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "fanout"
ALGORITHM = EXAMPLES / "energy_detect.py"


@pytest.fixture(autouse=True)
def private_home(tmp_path_factory, monkeypatch) -> Path:
    """Run records of each test under a fresh $AIRAVATA_MAGIC_HOME."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def task_python(slurm_testbed) -> str:
    from .task_venv import ensure_task_venv

    return ensure_task_venv()


@pytest.fixture(scope="session")
def profile(slurm_testbed, task_python, tmp_path_factory) -> Path:
    """The test bed's profile with the task interpreter as ``python`` and prices for ``hpc``."""
    doc = yaml.safe_load(Path(slurm_testbed.profile).read_text())
    doc["resources"]["hpc"]["python"] = task_python
    doc["resources"]["hpc"]["cost"] = {"cpu_hour": 0.05, "gpu_hour": 2.5}
    path = tmp_path_factory.mktemp("profile") / "cybershuttle.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="session")
def observations(tmp_path_factory) -> tuple[Path, dict]:
    """Eight synthetic observations (setigen, blimpy-readable) and the truth of what was injected."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import make_observations
    finally:
        sys.path.remove(str(EXAMPLES))
    d = tmp_path_factory.mktemp("obs")
    truth = make_observations.make(d, count=8, seed=7)
    return d, truth


def hits_match_truth(hits, truth: dict, names: dict[str, str]) -> list[str]:
    """Problems (empty when fine): every hit lies within 2 channels of an injected signal's path,
    and every injected signal is found in every time step. ``names`` maps input -> truth file name."""
    problems = []
    df_mhz = truth["df_hz"] / 1e6
    for inp, fname in names.items():
        sigs = truth["files"][fname]
        mine = hits[hits["input"] == inp]
        if mine.empty:
            problems.append(f"{fname}: no hits")
            continue
        for sig in sigs:
            expected = sig["f_start_mhz"] + sig["drift_rate_hz_s"] * mine["time_s"] / 1e6
            near = (mine["frequency_mhz"] - expected).abs() <= 2 * df_mhz
            if near.sum() < mine["time_index"].nunique():
                problems.append(f"{fname}: signal at {sig['f_start_mhz']:.6f} MHz found in {near.sum()} step(s)")
        for row in mine.itertuples():
            if not any(abs(row.frequency_mhz - (s["f_start_mhz"] + s["drift_rate_hz_s"] * row.time_s / 1e6)) <= 2 * df_mhz
                       for s in sigs):
                problems.append(f"{fname}: hit at {row.frequency_mhz:.6f} MHz t={row.time_s:.0f}s is no injected signal")
    return problems


def load_truth(path: Path) -> dict:
    return json.loads(path.read_text())
