"""Shell-session fixtures: the CLI in a real pseudo-terminal (pexpect), with a private home,
a private $HOME whose ~/.bashrc hides commands from history (the recorder must still see them)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "airavata_magic.cli"]
PROMPT = r"\(rec {name}\) \S+[$#] "


@pytest.fixture
def shell_env(tmp_path: Path, magic_home: Path) -> dict[str, str]:
    user_home = tmp_path / "user"
    user_home.mkdir()
    # A user's rc that would hide commands from `history` (ignoreboth) and has its own prompt.
    (user_home / ".bashrc").write_text("HISTCONTROL=ignoreboth\nHISTIGNORE='ls*'\nHISTSIZE=0\nset +o history\nPS1='\\w\\$ '\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # `airavata-magic` on PATH inside the recorded shell, whatever the venv's scripts are
    (bin_dir / "airavata-magic").write_text(f"#!/bin/sh\nexec {sys.executable} -m airavata_magic.cli \"$@\"\n")
    (bin_dir / "airavata-magic").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRAVATA_", "BASH_ENV", "PROMPT_COMMAND"))}
    env.update(AIRAVATA_MAGIC_HOME=str(magic_home), HOME=str(user_home), SHELL="/bin/bash", TERM="xterm",
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


@pytest.fixture
def start_shell(shell_env, tmp_path):
    """``start_shell(name) -> pexpect child`` at its first recorded prompt."""
    children: list[pexpect.spawn] = []

    def start(name: str, cwd: Path | None = None) -> pexpect.spawn:
        work = cwd or tmp_path
        child = pexpect.spawn(CLI[0], CLI[1:] + ["session", "start", name], env=shell_env, cwd=str(work),
                              encoding="utf-8", timeout=30, dimensions=(40, 200))
        children.append(child)
        child.expect(PROMPT.format(name=name))
        return child

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)
