"""The array job script (a golden file pins it; hostile values stay quoted), the array spec, and
an array larger than MaxArraySize split into several arrays on the real test bed."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from airavata_magic.fanout import api
from airavata_magic.fanout.record import FanoutRun, new_run_id
from airavata_magic.fanout.slurm import SlurmEngine, array_spec, render_array_script

from .conftest import ALGORITHM

GOLDEN = Path(__file__).parent / "golden" / "array.sh"


def _script() -> str:
    return render_array_script(job_name="fanout-fo-1 'x'", log_dir="/w/fanout/fo 1%/logs",
                               options=[("--partition", "debug"), ("--time", "10")], setup=["module load x"],
                               python="/opt/py thon/bin/python", algorithm="/w/alg/a;rm -rf ~.py",
                               outputs="/w/fanout/fo 1/$(out)")


def test_array_script_matches_golden_file():
    if not GOLDEN.exists():  # written once, then reviewed and committed
        GOLDEN.write_text(_script())
    assert _script() == GOLDEN.read_text()


def test_hostile_values_stay_quoted(tmp_path):
    text = _script()
    assert "'/w/alg/a;rm -rf ~.py'" in text and "'/w/fanout/fo 1/$(out)'" in text
    assert '#SBATCH --output="/w/fanout/fo 1%%/logs/%A_%a.log"' in text
    r = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert r.returncode == 0, r.stderr


def test_array_spec():
    assert array_spec(8, 3) == "0-7%3"
    assert array_spec(8, 8) == "0-7" and array_spec(1, 4) == "0-0"


@pytest.mark.slurm
def test_an_array_over_max_array_size_is_split(profile, observations, tmp_path):
    obs_dir, _ = observations
    from airavata_magic.profile import load_profile

    engine = SlurmEngine(load_profile(str(profile)).resource("hpc"))
    try:
        engine._max_array = 2  # as if the cluster's MaxArraySize were 2
        run_id = new_run_id()
        rd = engine.run_dir(run_id)
        files = sorted(obs_dir.glob("obs-*.h5"))[:5]
        engine.upload({f"inputs/{f.name}": str(f) for f in files} | {"alg/energy_detect.py": str(ALGORITHM)}, rd)
        run = FanoutRun(run_id=run_id, algorithm=f"{rd}/alg/energy_detect.py", algorithm_source=str(ALGORITHM),
                        inputs=[f"{rd}/inputs/{f.name}" for f in files], names=[f.name for f in files], resource="hpc",
                        kind="slurm", parallel=2, output=str(tmp_path / "out"), remote_dir=rd)
        run.submissions.append(engine.submit(run, list(range(5))))
        assert len(run.submissions[0].job_ids) == 3  # 2 + 2 + 1
        statuses = api.wait_for(run, engine, timeout=240)
        assert {s.state for s in statuses.values()} == {"done"}, statuses
        engine.fetch(run, list(range(5)))
        assert all((tmp_path / "out" / f"{t:05d}" / "info_df.pkl").is_file() for t in range(5))
    finally:
        engine.close()
    shutil.rmtree(tmp_path / "out", ignore_errors=True)
