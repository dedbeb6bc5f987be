"""``airavata-magic session load NAME``: re-run a shell session's commands in a fresh bash.

All commands run in ONE bash process, in order, so ``cd`` and variables carry over as when they
were recorded; it starts in the directory the first command ran in. The commands' output goes
straight to this terminal, and they may read it (a password prompt asks again). Commands that
failed when recorded are skipped (as ``%session load`` skips failed cells); the first command
that fails now stops the replay with its exit status and a message naming it.

A value redacted when recorded as ``NAME=<redacted>`` (``export API_TOKEN=...``) is asked for
again: ``$AIRAVATA_SECRET_NAME`` if set, else a prompt.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgument
from . import journal as shell_journal

_SECRET_RE = re.compile(r"""(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<q>["']?)<redacted>(?P=q)""")

# Reads NUL-separated commands from one pipe, runs each with eval in this shell, reports $? on another.
_DRIVER = r"""
__am_in=$AIRAVATA_REPLAY_IN __am_out=$AIRAVATA_REPLAY_OUT
unset AIRAVATA_REPLAY_IN AIRAVATA_REPLAY_OUT
while IFS= read -r -d '' -u "$__am_in" __am_cmd; do
    eval "$__am_cmd"
    printf '%s\n' "$?" >&"$__am_out"
done
"""


@dataclass
class Step:
    """One recorded command as it will be re-run."""

    number: int  # 1-based position in the session
    command: str
    cwd: str | None
    skip: str = ""  # why it is not re-run ('' = it is)


def plan(nb: dict[str, Any]) -> list[Step]:
    """The session's commands, with those that failed when recorded marked skipped."""
    steps = []
    for i, (cmd, meta) in enumerate(shell_journal.commands(nb), 1):
        skip = f"it failed when recorded (exit {meta.get('exit')})" if meta.get("status") == "error" else ""
        steps.append(Step(i, cmd, meta.get("cwd"), skip))
    return steps


def with_secrets(command: str, ask: Any = None) -> str:
    """``NAME=<redacted>`` -> ``NAME='value'`` (value from $AIRAVATA_SECRET_NAME or asked for)."""
    if ask is None:
        from ..sessions.values import secret as ask
    return _SECRET_RE.sub(lambda m: f"{m.group('name')}={shlex.quote(ask(m.group('name')))}", command)


def dry_run(name: str, nb: dict[str, Any]) -> str:
    """What ``load --dry-run`` prints: the commands in order, skipped ones commented out."""
    steps = plan(nb)
    first = next((s.cwd for s in steps if s.cwd), None)
    lines = [f"# session {name}: {len(steps)} command(s)" + (f", starting in {first}" if first else "")]
    for s in steps:
        lines.append(f"# skipped, {s.skip}: {s.command}" if s.skip else s.command)
    return "\n".join(lines)


def load(name: str, nb: dict[str, Any], shell: str = "/bin/bash") -> int:
    """Re-run the commands; 0 when all succeeded, else the failing command's exit status (1 if
    that was not a number, e.g. the shell itself exited)."""
    steps = plan(nb)
    todo = [s for s in steps if not s.skip]
    first = next((s.cwd for s in steps if s.cwd), None)
    cwd = first if first and os.path.isdir(first) else None
    if first and cwd is None:
        print(f"note: {first} (where the session started) does not exist here; starting in {os.getcwd()}",
              file=sys.stderr)
    commands_r, commands_w = os.pipe()
    status_r, status_w = os.pipe()
    env = dict(os.environ, AIRAVATA_REPLAY_IN=str(commands_r), AIRAVATA_REPLAY_OUT=str(status_w))
    proc = subprocess.Popen([shell, "--noprofile", "--norc", "-c", _DRIVER], cwd=cwd, env=env,
                            pass_fds=(commands_r, status_w))
    os.close(commands_r)
    os.close(status_w)
    status_file = os.fdopen(status_r, "r")
    try:
        for s in steps:
            if s.skip:
                print(f"[{s.number}/{len(steps)}] skipped ({s.skip}): {s.command}", file=sys.stderr, flush=True)
                continue
            print(f"[{s.number}/{len(steps)}] $ {s.command}", file=sys.stderr, flush=True)
            try:
                os.write(commands_w, with_secrets(s.command).encode() + b"\0")
            except BrokenPipeError:
                pass
            line = status_file.readline()
            code = int(line) if line.strip().isdigit() else None
            if code != 0:
                why = f"exit status {code}" if code is not None else "the shell exited"
                print(f"error: session {name!r} stopped at command {s.number} of {len(steps)} ({why}): {s.command}",
                      file=sys.stderr, flush=True)
                return code or 1
        print(f"session {name!r}: {len(todo)} command(s) re-run, all succeeded", file=sys.stderr, flush=True)
        return 0
    finally:
        os.close(commands_w)
        status_file.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read(name: str) -> dict[str, Any]:
    """A shell session's journal; a clear error when NAME is another kind."""
    from ..sessions.journal import SessionStore

    nb = SessionStore().read(name)
    kind = nb.get("metadata", {}).get("airavata", {}).get("session", {}).get("kind", "notebook")
    if kind != "shell":
        raise InvalidArgument(f"session {name!r} is a {kind} session, not a shell one")
    return nb
