"""The magics on Slurm and SSH runtimes, through a real notebook kernel (the lead's ``notebook``
fixture) talking to the real test bed: what a user types, what a user sees."""
from __future__ import annotations

import subprocess
import time

import pytest

from .kernel_helpers import squeue_state, wait_job_ended

pytestmark = pytest.mark.slurm


@pytest.fixture
def nb(notebook_factory, slurm_testbed):
    return notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(slurm_testbed.profile)})


_squeue_state = squeue_state


def test_a_slurm_runtime_from_request_to_stop(nb):
    cell = nb.ok("%request_runtime hpc_cpu")
    assert "requested on hpc (job " in cell.text
    nb.ok("%wait_for_runtime hpc_cpu --live --timeout 60")
    out = nb.ok("%%run_on hpc_cpu\nimport os\nprint(os.environ['SLURM_JOB_ID'], os.environ['SLURM_CPUS_PER_TASK'])").stdout
    job_id, cpus = out.split()
    assert cpus == "1" and _squeue_state(job_id) == "RUNNING"
    table = nb.ok("%runtimes").text
    assert "hpc_cpu" in table and "ready" in table and job_id in table and "0:2" in table  # ~30 min left

    nb.ok("%switch_runtime hpc_cpu")
    nb.ok("y = 7")
    assert nb.ok("print(y * 6)").stdout == "42\n"
    nb.ok("%restart_runtime hpc_cpu")
    cell = nb.run("y")
    assert cell.status == "error" and cell.error[0] == "NameError"
    assert nb.ok("import os; print(os.environ['SLURM_JOB_ID'])").stdout.strip() == job_id  # same allocation
    stat = nb.ok("%stat_runtime hpc_cpu").text
    assert "GPUs seen" in stat and job_id in stat

    nb.restart()  # the notebook kernel restarts; the runtime lives on in its job
    nb.ok("%attach_runtime hpc_cpu")
    assert nb.ok("%%run_on hpc_cpu\nprint('attached')").stdout == "attached\n"

    cell = nb.ok("%stop_runtime hpc_cpu")
    assert "stopped" in cell.text
    assert wait_job_ended(job_id) in ("CANCELLED", "")
    cell = nb.run("%%run_on hpc_cpu\n1")
    assert cell.status == "error" or "stopped" in cell.text


def test_gpu_preset_sees_one_gpu(nb):
    nb.ok("%request_runtime hpc_gpu")
    nb.ok("%wait_for_runtime hpc_gpu --timeout 60")
    out = nb.ok("%%run_on hpc_gpu\nimport os\nprint(os.environ['CUDA_VISIBLE_DEVICES'])").stdout.strip()
    assert out in ("0", "1", "2", "3")
    nb.ok("%stop_runtime hpc_gpu")


def test_use_picks_a_candidate_with_sbatch_test_only_and_says_why(nb):
    cell = nb.ok("%request_runtime picked --use hpc:gpu,hpc:debug --gpus 1 --walltime 5")
    assert "chose hpc:gpu" in cell.text and "starts in" in cell.text
    nb.ok("%wait_for_runtime picked --timeout 60")
    assert nb.ok("%%run_on picked\nimport os; print(os.environ['SLURM_JOB_PARTITION'])").stdout == "gpu\n"
    nb.ok("%stop_runtime picked")


def test_ssh_runtime_through_the_magics(nb):
    nb.ok("%request_runtime box --resource ws")
    nb.ok("%wait_for_runtime box --timeout 30")
    assert nb.ok("%%run_on box\nimport getpass; print(getpass.getuser())").stdout == "airtest\n"
    nb.ok("%stop_runtime box")


def test_authenticate_prints_one_row_per_resource(nb):
    text = nb.ok("%authenticate").text
    for resource in ("hpc", "ws"):
        row = [line for line in text.splitlines() if line.lstrip().startswith(resource)]
        assert len(row) == 1 and "ok" in row[0], text


def test_refused_and_failing_jobs_are_one_line_with_the_reason(nb, slurm_testbed, tmp_path):
    cell = nb.run("%request_runtime toomany --resource hpc --gpus 9 --partition gpu")
    assert "UsageError" in cell.text and "not available" in cell.text and "Traceback" not in cell.text
    profile = tmp_path / "broken.yml"
    text = slurm_testbed.profile.read_text().replace(f"python: {slurm_testbed.python}", "python: /nonexistent/python")
    profile.write_text(text)
    nb.ok(f"%request_runtime dud --file {profile} --resource hpc")
    t0 = time.monotonic()
    cell = nb.run("%wait_for_runtime dud --timeout 60")
    assert time.monotonic() - t0 < 12
    assert "failed" in cell.text and "could not start" in cell.text and "/nonexistent/python" in cell.text


def test_cells_still_run_after_the_ssh_connection_drops(nb, slurm_testbed):
    import os
    import signal

    nb.ok("%request_runtime hpc_cpu")
    nb.ok("%wait_for_runtime hpc_cpu --timeout 60")
    nb.ok("%%run_on hpc_cpu\nx = 1")
    # Kill the sshd processes serving our connection (by pid): the link drops under the notebook.
    pids = subprocess.run(["pgrep", "-u", slurm_testbed.user, "-f", "^sshd: "], capture_output=True, text=True).stdout.split()
    assert pids
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    time.sleep(2)  # the forwards reconnect by themselves; nothing is called in the notebook
    assert nb.ok("%%run_on hpc_cpu\nx += 1\nprint(x)", timeout=60).stdout == "2\n"
    nb.ok("%stop_runtime hpc_cpu")


def test_interrupting_the_notebook_cell_interrupts_the_remote_one(nb):
    nb.ok("%request_runtime hpc_cpu")
    nb.ok("%wait_for_runtime hpc_cpu --timeout 60")
    t0 = time.monotonic()
    cell = nb.run("%%run_on hpc_cpu\nimport time\ntime.sleep(60)", interrupt_after=2, timeout=30)
    assert time.monotonic() - t0 < 15
    assert cell.status == "error" and "KeyboardInterrupt" in cell.text
    assert nb.ok("%%run_on hpc_cpu\nprint('still here')").stdout == "still here\n"
    nb.ok("%stop_runtime hpc_cpu")
