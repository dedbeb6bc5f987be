"""Every magic fed malformed, missing and hostile arguments: one-line UsageError, never a traceback.

These run the magics in an in-process IPython shell (a real InteractiveShell, not a mock) so that
hypothesis can try hundreds of inputs quickly; the kernel-level behaviour is covered elsewhere.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.testing.globalipapp import get_ipython

import airavata_magic

MAGICS = ["authenticate", "request_runtime", "wait_for_runtime", "switch_runtime", "runtimes",
          "stat_runtime", "interrupt_runtime", "restart_runtime", "stop_runtime", "attach_runtime",
          "session", "template"]


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("AIRAVATA_MAGIC_HOME")
    os.environ["AIRAVATA_MAGIC_HOME"] = str(home)
    ip = get_ipython()
    airavata_magic.load_ipython_extension(ip)
    yield ip
    airavata_magic.get_manager().stop_all()
    if old is None:
        os.environ.pop("AIRAVATA_MAGIC_HOME", None)
    else:
        os.environ["AIRAVATA_MAGIC_HOME"] = old


def call(ip, magic: str, line: str) -> None:
    """Run a magic; only UsageError with one line may escape (or success)."""
    try:
        ip.run_line_magic(magic, line)
    except UsageError as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip(), f"{magic} {line!r}: multi-line error {msg!r}"
        assert "Traceback" not in msg


HOSTILE = ["", "--", "-x", "'", '"', "a b c d", "$(id)", "`id`", "; rm -rf /", "../../etc/passwd",
           "a/b", "x\x00y", "local", "--cpus", "--cpus -1", "--cpus 1e9", "--memory 12Q", "--gpus two",
           "--walltime 0", "--timeout -3", "--timeout nan", "--resource", "--use ,", "--use nowhere:gpu",
           "name --file /nonexistent.yml", "name --resource nowhere", "x" * 500, "nope --all",
           "n --use local --resource local", "n --walltime 99999999999", "--all extra", "é" * 3,
           "name --image 'a\nb'", "名前"]


@pytest.mark.parametrize("magic", MAGICS)
@pytest.mark.parametrize("line", HOSTILE)
def test_hostile_arguments(shell, magic, line):
    call(shell, magic, line)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(magic=st.sampled_from(MAGICS), line=st.text(max_size=60))
def test_fuzzed_arguments(shell, magic, line):
    if magic == "request_runtime" and line.strip() and "--" not in line:
        line += " --resource nowhere"  # never start real kernels from random names
    call(shell, magic, line)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.text(max_size=40))
def test_fuzzed_run_on_names(shell, line):
    try:
        shell.run_cell_magic("run_on", line, "1")
    except UsageError as e:
        assert "\n" not in str(e).strip()


def test_request_errors_say_how_to_fix(shell):
    with pytest.raises(UsageError, match=r"not a preset .* give --resource R"):
        shell.run_line_magic("request_runtime", "mystery")
    with pytest.raises(UsageError, match=r"invalid memory '12Q': use e.g. 512M, 8G"):
        shell.run_line_magic("request_runtime", "m --resource local --memory 12Q")
    with pytest.raises(UsageError, match=r"no runtime named 'ghost'"):
        shell.run_line_magic("switch_runtime", "ghost")
    with pytest.raises(UsageError, match=r"local resource has no GPUs"):
        shell.run_line_magic("request_runtime", "g --resource local --gpus 1")
