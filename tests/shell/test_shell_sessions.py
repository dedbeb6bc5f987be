"""Shell sessions recorded through a real pseudo-terminal, shown, re-run, exported and replayed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pexpect

from airavata_magic.sessions.runner import run_notebook

from .conftest import CLI, PROMPT

TYPED_PASSWORD = "Typed-Secret-7731"


def _cli(env, *args, cwd=None, stdin=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=env, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def _journal(home: Path, name: str) -> dict:
    return json.loads((home / "sessions" / f"{name}.ipynb").read_text())


def test_record_show_load_and_export_a_shell_session(start_shell, shell_env, magic_home, tmp_path):
    (tmp_path / "keep.txt").write_text("present\n")
    sh = start_shell("build")
    prompt = PROMPT.format(name="build")
    steps = [
        "mkdir -p work && cd work",
        """printf '%s\\n' "a b" 'c|d' | tr a-z A-Z > out.txt && cat out.txt""",  # quotes and pipes
        "ls /nonexistent-airavata-dir",  # fails (and HISTIGNORE='ls*' must not hide it)
    ]
    seen = []
    for cmd in steps:
        sh.sendline(cmd)
        sh.expect(prompt)
        seen.append(sh.before)
    assert "A B\r\nC|D" in seen[1]  # the terminal shows the output as usual
    sh.sendline("read -s -p 'Password: ' PW; echo; echo \"length ${#PW}\"")  # echo off while typing
    sh.expect("Password: ")
    sh.sendline(TYPED_PASSWORD)
    sh.expect(prompt)
    assert f"length {len(TYPED_PASSWORD)}" in sh.before
    sh.sendline("export DB_PASSWORD=s3cr3t-value-42; test -f ../keep.txt && echo keep-ok")
    sh.expect(prompt)
    sh.sendline("")  # an empty line is not a command
    sh.expect(prompt)
    sh.sendline("echo done > after.txt")
    sh.expect(prompt)
    sh.sendline("exit")
    sh.expect(pexpect.EOF)
    assert "session 'build' stopped: 6 command(s) recorded" in sh.before

    raw = (magic_home / "sessions" / "build.ipynb").read_text()
    assert TYPED_PASSWORD not in raw and "s3cr3t-value-42" not in raw
    assert oct(os.stat(magic_home / "sessions" / "build.ipynb").st_mode & 0o777) == "0o600"
    nb = json.loads(raw)
    assert nb["metadata"]["airavata"]["session"]["kind"] == "shell"
    cells = nb["cells"]
    assert [c["source"] for c in cells] == [
        steps[0], steps[1], steps[2], "read -s -p 'Password: ' PW; echo; echo \"length ${#PW}\"",
        "export DB_PASSWORD=<redacted>; test -f ../keep.txt && echo keep-ok", "echo done > after.txt"]
    meta = [c["metadata"]["airavata"] for c in cells]
    work = str(tmp_path / "work")
    assert [m["cwd"] for m in meta] == [str(tmp_path)] + [work] * 5
    assert [m["exit"] for m in meta] == [0, 0, 2, 0, 0, 0]
    assert [m["hidden_input"] for m in meta] == [False, False, False, True, False, False]
    assert all(m["duration"] >= 0 and m["output_cap"] == 65536 and not m["truncated"] for m in meta)
    assert cells[1]["outputs"][0]["text"] == "A B\nC|D\n"
    assert "No such file or directory" in cells[2]["outputs"][0]["text"]
    assert cells[3]["outputs"][0]["text"] == f"Password: \nlength {len(TYPED_PASSWORD)}\n"

    listing = _cli(shell_env, "session", "list")
    assert listing.returncode == 0 and "kind" in listing.stdout.splitlines()[0]
    assert any(line.split()[:2] == ["build", "shell"] for line in listing.stdout.splitlines())
    show = _cli(shell_env, "session", "show", "build")
    assert show.returncode == 0 and "exit" in show.stdout and "tr a-z A-Z" in show.stdout
    dry = _cli(shell_env, "session", "load", "build", "--dry-run")
    assert dry.returncode == 0
    assert dry.stdout.splitlines()[1:] == [steps[0], steps[1], f"# skipped, it failed when recorded (exit 2): {steps[2]}",
                                           cells[3]["source"], cells[4]["source"], cells[5]["source"]]

    # Re-run in a fresh shell: keep.txt is gone now, so command 5 fails and the replay stops there.
    (tmp_path / "keep.txt").unlink()
    (tmp_path / "work" / "out.txt").unlink()
    (tmp_path / "work" / "after.txt").unlink()
    env = dict(shell_env, AIRAVATA_SECRET_DB_PASSWORD="from-env")
    r = _cli(env, "session", "load", "build", cwd="/", stdin="typed-again\n")
    assert r.returncode == 1, r.stderr
    assert "A B\nC|D\n" in r.stdout and "length 11" in r.stdout and "keep-ok" not in r.stdout
    assert (tmp_path / "work" / "out.txt").read_text() == "A B\nC|D\n"
    assert "error: session 'build' stopped at command 5 of 6 (exit status 1): export DB_PASSWORD" in r.stderr
    assert not (tmp_path / "work" / "after.txt").exists()
    (tmp_path / "keep.txt").write_text("back\n")
    r = _cli(env, "session", "load", "build", stdin="typed-again\n")
    assert r.returncode == 0, r.stderr
    assert "keep-ok" in r.stdout and (tmp_path / "work" / "after.txt").read_text() == "done\n"

    # Export: one %%bash cell per command (the one that failed when recorded left out); papermill runs it.
    out = tmp_path / "build.ipynb"
    assert _cli(shell_env, "session", "export", "build", str(out)).returncode == 0
    code = ["".join(c["source"]) for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    assert len(code) == 5 and all(c.startswith("%%bash\ncd ") for c in code)
    assert 'DB_PASSWORD="${AIRAVATA_SECRET_DB_PASSWORD:?' in code[3]
    (tmp_path / "work" / "after.txt").unlink()
    result = run_notebook(out, tmp_path / "build-run.ipynb", env=env, cwd=str(tmp_path), timeout=120)
    assert result.status == "ok", result.error
    assert (tmp_path / "work" / "after.txt").read_text() == "done\n"


def test_kill_9_of_the_recorder_keeps_completed_commands(start_shell, shell_env, magic_home):
    sh = start_shell("crash")
    prompt = PROMPT.format(name="crash")
    for cmd in ("echo one", "echo two"):
        sh.sendline(cmd)
        sh.expect(prompt)
    sh.sendline("sleep 30")  # in flight when the recorder dies: not a completed command
    os.kill(sh.pid, signal.SIGKILL)
    sh.expect(pexpect.EOF)
    cells = _journal(magic_home, "crash")["cells"]
    assert [c["source"] for c in cells] == ["echo one", "echo two"]
    assert [c["outputs"][0]["text"] for c in cells] == ["one\n", "two\n"]
    # the session is not locked by the dead recorder: list shows it, and stop finds nothing running
    assert "crash" in _cli(shell_env, "session", "list").stdout
    r = _cli(shell_env, "session", "stop")
    assert r.returncode == 2 and r.stderr.startswith("error: no shell session is recording")


def test_stop_from_inside_and_from_another_terminal(start_shell, shell_env, magic_home):
    sh = start_shell("inside")
    sh.sendline("echo kept")
    sh.expect(PROMPT.format(name="inside"))
    sh.sendline("airavata-magic session stop")
    sh.expect(pexpect.EOF)
    assert "session 'inside' stopped: 1 command(s) recorded" in sh.before
    assert [c["source"] for c in _journal(magic_home, "inside")["cells"]] == ["echo kept"]

    sh = start_shell("outside")
    sh.sendline("echo hi")
    sh.expect(PROMPT.format(name="outside"))
    r = _cli(shell_env, "session", "stop", "outside")
    assert r.returncode == 0 and r.stdout.strip() == "session 'outside' stopped", r.stderr
    sh.expect(pexpect.EOF)
    assert [c["source"] for c in _journal(magic_home, "outside")["cells"]] == ["echo hi"]


def test_bad_input_is_one_line_and_exit_2(start_shell, shell_env, magic_home):
    cases = [
        (["session", "start", "bad name"], "invalid session name"),
        (["session", "load", "missing"], "no session named 'missing'"),
        (["session", "stop", "nothing"], "no shell session"),
    ]
    for args, words in cases:
        r = _cli(shell_env, *args)
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _cli(dict(shell_env, SHELL="/bin/zsh"), "session", "start", "z")
    assert r.returncode == 2 and "shell sessions record bash" in r.stderr
    sh = start_shell("outer")
    sh.sendline("airavata-magic session start inner")  # nested: refused, the outer one goes on
    sh.expect(PROMPT.format(name="outer"))
    assert "already recording session 'outer'" in sh.before
    sh.sendline("exit")
    sh.expect(pexpect.EOF)
    r = _cli(shell_env, "session", "start", "outer")  # exists: refused without --append
    assert r.returncode == 2 and "--append" in r.stderr
