"""``airavata-magic compute execute``: batch commands on the test bed, output streamed live, exit
code returned, bad input refused in one line."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slurm


def _cli(slurm_testbed, tmp_path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, AIRAVATA_MAGIC_PROFILE=str(slurm_testbed.profile), AIRAVATA_MAGIC_HOME=str(tmp_path))
    return subprocess.Popen([sys.executable, "-m", "airavata_magic.cli", "compute", "execute", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("resource", ["hpc", "ws"])
def test_output_is_streamed_while_the_command_runs_and_exit_code_returned(slurm_testbed, tmp_path, resource):
    p = _cli(slurm_testbed, tmp_path, "echo first; sleep 3; echo second; echo to-stderr >&2; exit 3",
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


def test_slurm_batch_command_gets_its_resources(slurm_testbed, tmp_path):
    p = _cli(slurm_testbed, tmp_path, 'echo "$SLURM_JOB_ID:$CUDA_VISIBLE_DEVICES:$SLURM_CPUS_PER_TASK"',
             "--resource", "hpc", "--gpus", "2", "--cpus", "2", "--walltime", "2")
    out, err = p.communicate(timeout=60)
    job, gpus, cpus = out.strip().split(":")
    assert p.returncode == 0 and job.isdigit() and len(set(gpus.split(","))) == 2 and cpus == "2"
    assert f"submitted Slurm job {job}" in err


def test_command_with_metacharacters_runs_as_written(slurm_testbed, tmp_path):
    marker = f"/tmp/airavata-pwned-{time.time_ns()}"
    cmd = f"printf '%s\\n' \"it's\" '$(touch {marker})'"
    p = _cli(slurm_testbed, tmp_path, cmd, "--resource", "hpc")
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
def test_bad_input_is_one_line_and_exit_2(slurm_testbed, tmp_path, args, message):
    p = _cli(slurm_testbed, tmp_path, *args)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
