"""Pure functions of the slurm/ssh backends: job-script rendering (golden file), quoting, state
mapping, profile keys. No test bed needed."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from airavata_magic.backends.scripts import (parse_sections, render_job_script, render_ssh_script,
                                             run_dir_name, sbatch_options, sbatch_quote, slurm_filename)
from airavata_magic.backends.slurm import observation_of, parse_time_left
from airavata_magic.errors import InvalidArgument, ProfileError
from airavata_magic.profile import parse_profile
from airavata_magic.runtime import Runtime, RuntimeState
from airavata_magic.transport.target import parse_jump, quote_argv

GOLDEN = Path(__file__).parent / "golden"
NASTY = "x'; touch /tmp/pwned #$(id) `id` \"q\" \\ 100%"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review, then regenerate with UPDATE_GOLDEN=1"


def test_job_script_matches_golden_file():
    script = render_job_script(
        job_name=NASTY, output="/home/a b/.airavata-magic/runtimes/r-1/job.log",
        options=sbatch_options(partition="gpu", account=NASTY, walltime=30, cpus=4, memory=8192, gpus=2, node="n1"),
        setup=["module load cuda/12", "export X='a b'"],
        command=["/opt/py thon/bin/python", "/home/a b/launcher.py", "/home/a b/rd", "--ip", "auto"],
    )
    _golden("slurm_job.sh", script)


def test_minimal_job_script_matches_golden_file():
    script = render_job_script(job_name="plain", output="/w/job.log", options=[], setup=[],
                               command=["python3", "/w/l.py", "/w"])
    _golden("slurm_job_minimal.sh", script)


def test_ssh_script_matches_golden_file():
    _golden("ssh_kernel.sh", render_ssh_script(setup=["source ~/venv/bin/activate"],
                                               command=["python3", "/w d/l.py", "/w d/r", "--detach"]))


def test_rendered_command_line_is_one_safe_argv():
    """The payload line, run by a real shell, passes each value as one argument, unexpanded."""
    script = render_job_script(job_name="n", output="/o", options=[], setup=[],
                               command=["printf", "[%s]\\n", NASTY, "$(id)", "a b"])
    payload = script.strip().splitlines()[-1]
    out = subprocess.run(["bash", "-c", payload], capture_output=True, text=True, check=True).stdout
    assert out == f"[{NASTY}]\n[$(id)]\n[a b]\n"


def test_sbatch_quoting():
    assert sbatch_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert slurm_filename("/x/100%/%j.log") == "/x/100%%/%%j.log"


def test_sbatch_options_order_and_units():
    assert sbatch_options(walltime=5, memory=512, gpus=1, cpus=2) == [
        ("--time", "5"), ("--cpus-per-task", "2"), ("--mem", "512M"), ("--gres", "gpu:1")]
    assert sbatch_options() == []


def test_setup_lines_must_be_single_lines():
    with pytest.raises(InvalidArgument):
        render_job_script(job_name="n", output="/o", options=[], setup=["a\nb"], command=["true"])


def test_quote_argv_and_jump():
    assert quote_argv(["echo", "a b", "'"]) == "echo 'a b' ''\"'\"''"
    assert parse_jump("bastion", "me") == ("me", "bastion", 22)
    assert parse_jump("al@b.example.org:2200", "me") == ("al", "b.example.org", 2200)
    for bad in ("a b", "x;y", "h:0", "-oProxyCommand=x", "h:99999"):
        with pytest.raises(ValueError):
            parse_jump(bad, "me")


def test_run_dir_names_are_shell_safe_and_unique():
    a, b = run_dir_name("q';$(id)"), run_dir_name("q';$(id)")
    assert a != b and a.startswith("q____id_-")
    assert set(a) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
    assert run_dir_name("...")[:8] == "runtime-"


def test_parse_sections():
    text = "a\nb\n@@x one\n1\n@@x two\n@@x three\n3\n"
    assert parse_sections(text, "@@x") == {"": "a\nb\n", "one": "1\n", "two": "", "three": "3\n"}


def test_parse_time_left():
    assert parse_time_left("1-02:03:04") == 93784
    assert parse_time_left("02:03:04") == 7384
    assert parse_time_left("3:04") == 184
    assert parse_time_left("UNLIMITED") is None
    assert parse_time_left("INVALID") is None


def _rt(state=RuntimeState.QUEUED):
    return Runtime(name="r", resource="hpc", kind="slurm", job_id="7", state=state)


@pytest.mark.parametrize("slurm_state,was,expect,reason_part", [
    ("PENDING", RuntimeState.QUEUED, RuntimeState.QUEUED, "Priority"),
    ("RUNNING", RuntimeState.QUEUED, RuntimeState.STARTING, ""),
    ("RUNNING", RuntimeState.READY, RuntimeState.READY, ""),
    ("TIMEOUT", RuntimeState.READY, RuntimeState.EXPIRED, "walltime"),
    ("CANCELLED", RuntimeState.READY, RuntimeState.STOPPED, "cancelled outside"),
    ("CANCELLED+", RuntimeState.READY, RuntimeState.STOPPED, "cancelled outside"),
    ("FAILED", RuntimeState.STARTING, RuntimeState.FAILED, "could not start"),
    ("FAILED", RuntimeState.READY, RuntimeState.DEAD, "FAILED"),
    ("NODE_FAIL", RuntimeState.READY, RuntimeState.DEAD, "NODE_FAIL"),
    ("OUT_OF_MEMORY", RuntimeState.STARTING, RuntimeState.FAILED, "OUT_OF_MEMORY"),
    ("COMPLETED", RuntimeState.READY, RuntimeState.DEAD, "kernel exited"),
    ("", RuntimeState.QUEUED, RuntimeState.FAILED, "no longer knows"),
])
def test_slurm_state_mapping(slurm_state, was, expect, reason_part):
    obs = observation_of(_rt(was), slurm_state, "Priority" if slurm_state == "PENDING" else "None", "n1",
                         "10:00", "log", now=1000.0)
    assert obs.state == expect
    assert reason_part in obs.reason
    assert obs.log_tail == "log"


def test_running_sets_walltime_end():
    obs = observation_of(_rt(), "RUNNING", "None", "n1", "1:00:00", "", now=1000.0)
    assert obs.ends_at == 1000.0 + 3600 and obs.node == "n1"
    assert observation_of(_rt(), "RUNNING", "None", "n1", "UNLIMITED", "", now=1.0).ends_at is None


PROFILE = """\
resources:
  hpc:
    kind: slurm
    host: login.example.org
    port: 2222
    user: alice
    proxy_jump: bob@bastion:22
    setup: ["module load cuda/12"]
    partition: debug
    account: "NeuroData25VC1"
    work_dir: ~/.am
  ws:
    kind: ssh
    host: ws.example.org
"""


def test_profile_accepts_slurm_and_ssh_keys():
    prof = parse_profile(PROFILE, "p.yml")
    assert prof.resources["hpc"].settings["setup"] == ["module load cuda/12"]
    assert prof.resources["ws"].settings == {"host": "ws.example.org"}


@pytest.mark.parametrize("bad,line,key", [
    ("  hpc:\n    kind: slurm\n    port: 22\n", 3, "resources.hpc.host"),
    ("  hpc:\n    kind: slurm\n    host: h\n    port: 70000\n", 5, "port"),
    ("  hpc:\n    kind: slurm\n    host: h\n    colour: red\n", 5, "colour"),
    ("  ws:\n    kind: ssh\n    host: h\n    partition: debug\n", 5, "partition"),
    ("  hpc:\n    kind: slurm\n    host: '-oProxyCommand=x'\n", 4, "host"),
    ("  hpc:\n    kind: slurm\n    host: h\n    user: 'a b'\n", 5, "user"),
    ("  hpc:\n    kind: slurm\n    host: h\n    proxy_jump: 'a;b'\n", 5, "proxy_jump"),
    ("  hpc:\n    kind: slurm\n    host: h\n    setup: [\"a\\nb\"]\n", 5, "setup"),
    ("  hpc:\n    kind: slurm\n    host: h\n    work_dir: ~bob/x\n", 5, "work_dir"),
])
def test_profile_rejects_bad_keys_with_file_line_key(bad, line, key):
    with pytest.raises(ProfileError) as e:
        parse_profile("resources:\n" + bad, "p.yml")
    assert e.value.line == line and e.value.key == key, str(e.value)
    assert str(e.value).startswith(f"profile p.yml:{line} key '{key}'")


def test_backoff_stays_short_while_things_change_then_grows_to_the_cap():
    from airavata_magic.backends.ssh_launched import Backoff

    clock = [100.0]
    b = Backoff(first=0.2, factor=2.0, cap=1.0, hold=1.0, clock=lambda: clock[0])
    b.store("k", "queued")
    assert b.fresh("k") and not b.fresh("other")
    clock[0] += 0.25
    assert not b.fresh("k")  # 0.2 s while things are new
    b.store("k", "queued")  # unchanged, but within `hold` of the last change: still 0.2
    assert b.interval == 0.2
    clock[0] += 1.0
    intervals = []
    for _ in range(4):
        b.store("k", "queued")
        intervals.append(b.interval)
    assert intervals == [0.4, 0.8, 1.0, 1.0]
    b.store("k", "running")  # a change: short again
    assert b.interval == 0.2
    b.reset()
    assert not b.fresh("k")


def test_an_unavailable_test_bed_fails_under_ci_and_skips_elsewhere(monkeypatch):
    from .testbed import unavailable

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="Slurm test bed unavailable: apt-get failed"):
        unavailable("apt-get failed")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="apt-get failed"):
        unavailable("apt-get failed")
