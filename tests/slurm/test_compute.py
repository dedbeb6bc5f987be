"""``airavata-magic compute execute``: batch commands on the test bed, output streamed live, exit
code returned, bad input refused in one line."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from .kernel_helpers import wait_job_ended

pytestmark = pytest.mark.slurm


@pytest.fixture
def cli(slurm_testbed, tmp_path):
    """Start ``airavata-magic compute execute ARGS``; any still running at the end is sent SIGTERM
    (which cancels its job) and reaped."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        env = dict(os.environ, AIRAVATA_MAGIC_PROFILE=str(slurm_testbed.profile), AIRAVATA_MAGIC_HOME=str(tmp_path))
        p = subprocess.Popen([sys.executable, "-m", "airavata_magic.cli", "compute", "execute", *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()


@pytest.mark.parametrize("resource", ["hpc", "ws"])
def test_output_is_streamed_while_the_command_runs_and_exit_code_returned(cli, resource):
    p = cli("echo first; sleep 3; echo second; echo to-stderr >&2; exit 3",
             "--resource", resource)
    first = p.stdout.readline()
    seen_at = time.monotonic()
    rest, err = p.communicate(timeout=60)
    ended_at = time.monotonic()
    assert first == "first\n" and rest == "second\n" + ("to-stderr\n" if resource == "hpc" else "")
    assert ended_at - seen_at > 1.5  # the first line came while the command was still running
    assert p.returncode == 3
    if resource == "ws":
        assert "to-stderr" in err


def test_slurm_batch_command_gets_its_resources(cli):
    p = cli('echo "$SLURM_JOB_ID:$CUDA_VISIBLE_DEVICES:$SLURM_CPUS_PER_TASK"',
             "--resource", "hpc", "--gpus", "2", "--cpus", "2", "--walltime", "2")
    out, err = p.communicate(timeout=60)
    job, gpus, cpus = out.strip().split(":")
    assert p.returncode == 0 and job.isdigit() and len(set(gpus.split(","))) == 2 and cpus == "2"
    assert f"submitted Slurm job {job}" in err


def test_command_with_metacharacters_runs_as_written(cli):
    marker = f"/tmp/airavata-pwned-{time.time_ns()}"
    cmd = f"printf '%s\\n' \"it's\" '$(touch {marker})'"
    p = cli(cmd, "--resource", "hpc")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and out == f"it's\n$(touch {marker})\n"
    assert not os.path.exists(marker)


@pytest.mark.parametrize("args,message", [
    (["true", "--resource", "nope"], "unknown resource 'nope'"),
    (["true", "--resource", "local"], "runs on slurm and ssh resources"),
    (["true", "--resource", "ws", "--gpus", "1"], "no scheduler"),
    (["true", "--resource", "hpc", "--gpus", "x"], "invalid gpus"),
    (["true", "--resource", "hpc", "--partition", "no such"], "invalid partition"),
    (["  ", "--resource", "hpc"], "needs a command"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, message):
    p = cli(*args)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_terminating_the_command_line_cancels_the_job(cli, slurm_testbed):
    p = cli("echo started; sleep 300", "--resource", "hpc")
    assert p.stdout.readline() == "started\n"
    p.terminate()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130
    job = err.split("submitted Slurm job ")[1].split()[0]
    assert wait_job_ended(job) in ("CANCELLED", "")
