"""``usage()`` / ``%usage`` against real Slurm accounting (slurmdbd + MariaDB on the test bed):
finished jobs, a failed one, GPU-hours of a job that had a gres GPU, and the runtime this package
started, marked."""
from __future__ import annotations

import time

from airavata_magic.cluster import api as compute
from airavata_magic.manager import RuntimeManager
from airavata_magic.runtime import RuntimeStore


def _sbatch(tb, *args: str) -> str:
    p = tb.as_user("cd /tmp && sbatch --parsable " + " ".join(args))
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


def _wait_finished(tb, job_ids: list[str], timeout: float = 240) -> None:  # the GPU job may queue behind others
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = tb.as_user(f"sacct -X -n -P -j {','.join(job_ids)} -o JobID,State").stdout
        states = dict(line.split("|") for line in out.splitlines() if "|" in line)
        if len(states) == len(job_ids) and all(s.split()[0] in ("COMPLETED", "FAILED", "CANCELLED") for s in states.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"jobs {job_ids} did not finish in {timeout} s: {out}")


def test_usage_reports_real_jobs(accounting_testbed, profile_file, tmp_path):
    tb, f = accounting_testbed, str(profile_file)
    gpu_job = _sbatch(tb, "-p gpu --gres=gpu:1 --time=1 --wrap 'sleep 2'")
    cpu_job = _sbatch(tb, "-p debug --time=1 --wrap 'sleep 1'")
    bad_job = _sbatch(tb, "-p debug --time=1 --wrap 'exit 3'")
    manager = RuntimeManager(RuntimeStore(tmp_path / "home"), warn=lambda _t: None)
    try:
        rt, _ = manager.request("hpc_cpu", file=f)
        manager.wait("hpc_cpu", timeout=180)
        ours = manager.store.load("hpc_cpu").job_id
        manager.stop("hpc_cpu")
    finally:
        manager.close()
    _wait_finished(tb, [gpu_job, cpu_job, bad_job, ours])

    # slurmdbd indexes finished jobs for time-window queries a moment after `sacct -j` sees them.
    deadline = time.monotonic() + 60
    while True:
        jobs = compute.usage("hpc", "1d", jobs=True, file=f).set_index("job_id")
        if {gpu_job, cpu_job, bad_job, ours} <= set(jobs.index) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {gpu_job, cpu_job, bad_job, ours} <= set(jobs.index), jobs.to_string()
    assert jobs.loc[gpu_job, "gpus"] == 1 and jobs.loc[gpu_job, "partition"] == "gpu"
    assert jobs.loc[gpu_job, "gpu_hours"] >= 2 / 3600
    assert jobs.loc[cpu_job, "state"] == "COMPLETED" and jobs.loc[cpu_job, "gpus"] == 0
    assert jobs.loc[bad_job, "state"] == "FAILED"
    assert bool(jobs.loc[ours, "airavata"]) and not bool(jobs.loc[cpu_job, "airavata"])

    summary = compute.usage("hpc", "1d", file=f)
    assert summary["jobs"].sum() == len(jobs)  # every job in exactly one (account, partition) row
    summary = summary[summary.account == jobs.loc[cpu_job, "account"]].set_index("partition")
    assert summary.loc["gpu", "gpu_hours"] >= 2 / 3600
    assert "FAILED:" in summary.loc["debug", "by_state"] and "COMPLETED:" in summary.loc["debug", "by_state"]
    assert summary.loc["debug", "airavata_jobs"] >= 1


def test_usage_cli_and_magic(accounting_testbed, profile_file, env_for, notebook_factory):
    from .test_cli import cli

    env = env_for(profile_file)
    p = cli("compute", "usage", "--since", "1d", "--resource", "hpc", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].split() == ["resource", "account", "partition", "jobs", "by_state",
                                                "cpu_hours", "gpu_hours", "airavata_jobs"]
    nb = notebook_factory(env=env)
    cell = nb.ok("u = %usage --since 1d\nsorted(set(u.partition) & {'debug', 'gpu'})")
    assert "['debug', 'gpu']" in cell.text
