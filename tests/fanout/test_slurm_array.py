"""Fan-out on the real Slurm test bed: one array job, staged inputs, gathered hits that are the
injected signals, a failed input reported by name and retried alone."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from airavata_magic.fanout import api

from .conftest import ALGORITHM, hits_match_truth

pytestmark = pytest.mark.slurm


def _squeue_array_lines(slurm_testbed, job_id: str) -> str:
    return slurm_testbed.as_user(f"scontrol show job {job_id} | grep -o 'ArrayTaskId=[^ ]*' | head -1").stdout


def test_array_over_staged_inputs_finds_the_injected_signals_and_retries_only_the_failed(
        slurm_testbed, profile, observations, tmp_path):
    obs_dir, truth = observations
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    files = sorted(obs_dir.glob("obs-*.h5"))[:5]
    for f in files:
        shutil.copy(f, inputs / f.name)
    (inputs / "obs-broken.h5").write_bytes(b"this is not HDF5")  # fails in the algorithm

    res = api.run(str(ALGORITHM), str(inputs / "*.h5"), resource="hpc", parallel=3, output=str(tmp_path / "out"),
                  file=str(profile), timeout=240)
    run = api._store.load(res.run_id)
    # ONE array job for all six inputs, throttled to 3 at once
    assert len(run.submissions) == 1 and len(run.submissions[0].job_ids) == 1
    job = run.submissions[0].job_ids[0]
    out = slurm_testbed.as_user(f"scontrol show job {job} 2>/dev/null | grep -o 'ArrayTaskThrottle=[0-9]*' | head -1").stdout
    assert out.strip() in ("", "ArrayTaskThrottle=3")  # shown while the job is still known to slurmctld
    # the broken input is reported by name, with its stderr tail; the others are gathered
    assert list(res.failed["input"]) == [str(inputs / "obs-broken.h5")]
    assert "exit code 1" in res.failed["reason"].iloc[0]
    assert "OSError" in res.failed["stderr_tail"].iloc[0] or "signature" in res.failed["stderr_tail"].iloc[0]
    names = {str(inputs / f.name): f.name for f in files}
    assert set(res.arrays) == set(names)
    assert not hits_match_truth(res.hits, truth, names)
    assert set(res.hits.columns) >= {"input", "task", "frequency_mhz", "time_s", "snr"}
    assert (tmp_path / "out" / "00000" / "filtered.npy").is_file()
    assert res.headers[str(inputs / files[0].name)]["nchans"] == 512

    # repair the input, retry: only that task runs again (a second, one-task array)
    shutil.copy(files[0], inputs / "obs-broken.h5")
    again = api.retry(res.run_id, timeout=240)
    run = api._store.load(res.run_id)
    assert run.submissions[-1].tasks == [int(res.failed["task"].iloc[0])]
    assert again.failed.empty
    assert len(again.arrays) == 6
    names[str(inputs / "obs-broken.h5")] = files[0].name
    assert not hits_match_truth(again.hits, truth, names)


def test_inputs_already_on_the_resource_and_a_task_killed_without_exit_code(slurm_testbed, profile, observations, tmp_path):
    obs_dir, truth = observations
    # put two inputs where the test user can read them: its home on the 'cluster'
    remote = f"/home/{slurm_testbed.user}/fanout-remote-inputs"
    f = sorted(obs_dir.glob("obs-*.h5"))[:2]
    subprocess.run(["rm", "-rf", remote], check=True)
    Path(remote).mkdir(parents=True)
    for x in f:
        shutil.copy(x, remote)
    shutil.chown(remote, slurm_testbed.user)
    for x in Path(remote).iterdir():
        shutil.chown(x, slurm_testbed.user)
    res = api.run(str(ALGORITHM), f"hpc:{remote}/*.h5", resource="hpc", parallel=2, output=str(tmp_path / "o"),
                  file=str(profile), timeout=240)
    assert res.failed.empty, res.failed.to_dict("records")
    names = {f"hpc:{remote}/{x.name}": x.name for x in f}
    assert set(res.arrays) == set(names)
    assert not hits_match_truth(res.hits, truth, names)
