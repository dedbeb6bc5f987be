"""The provisioner on the Slurm test bed: ``papermill -k airavata-hpc_cpu`` runs a notebook in a job."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import nbformat
import pytest

from airavata_magic.jupyter.kernelspec import write_spec
from airavata_magic.sessions.runner import end_gracefully

from .conftest import read_nb

pytestmark = pytest.mark.slurm


def test_papermill_k_runs_the_notebook_in_a_slurm_job(slurm_testbed, tmp_path, child_env, magic_home, monkeypatch):
    monkeypatch.setenv("AIRAVATA_MAGIC_PROFILE", str(slurm_testbed.profile))
    write_spec("hpc_cpu", tmp_path / "jp" / "kernels")
    env = dict(child_env, AIRAVATA_MAGIC_PROFILE=str(slurm_testbed.profile), JUPYTER_PATH=str(tmp_path / "jp"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint(os.environ['SLURM_JOB_ID'], os.environ.get('SLURM_CPUS_ON_NODE'))"),
                nbformat.v4.new_code_cell("6 * 7")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    proc = subprocess.Popen([sys.executable, "-m", "papermill", "-k", "airavata-hpc_cpu", str(tmp_path / "in.ipynb"),
                             str(tmp_path / "out.ipynb"), "--no-progress-bar"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        end_gracefully(proc)  # SIGINT: the provisioner cancels its queued job on the way out
        queue = subprocess.run(["squeue", "-a", "-h", "-o", "%i %j %T %r"], capture_output=True, text=True).stdout
        pytest.fail(f"the notebook did not run within 300 s; the test bed's queue:\n{queue}")
    assert proc.returncode == 0, err[-2000:]
    cells = read_nb(tmp_path / "out.ipynb")["cells"]
    job_id = cells[0]["outputs"][0]["text"].split()[0]
    assert cells[1]["outputs"][0]["data"]["text/plain"] == "42"
    records = [json.loads(p.read_text()) for p in (magic_home / "runtimes").glob("hpc_cpu-*.json")]
    assert len(records) == 1 and records[0]["job_id"] == job_id and records[0]["kind"] == "slurm"
    # the kernel exits on shutdown (the manager then sees it dead) and the provisioner stops the runtime
    assert records[0]["state"] in ("stopped", "dead")
    # the job was cancelled when the kernel shut down: Slurm no longer runs it
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        q = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
        if q.stdout.strip() in ("", "CANCELLED", "COMPLETED"):
            break
        time.sleep(1)
    assert q.stdout.strip() in ("", "CANCELLED", "COMPLETED"), q.stdout
