"""Sessions recorded in a terminal: ``airavata-magic session start NAME`` runs the user's bash
under a pseudo-terminal and journals each command (``recorder``); ``session load`` re-runs them
(``replay``); ``session export`` writes ``%%bash`` cells (``export``). The journal is the same
nbformat file as notebook sessions, marked ``kind: shell`` (``journal``)."""
from __future__ import annotations

import os
import signal
import sys
import time

from ..errors import InvalidArgument


def start(name: str, *, append: bool = False, shell: str | None = None) -> int:
    """Record a shell session in this terminal until the shell exits; returns its exit status."""
    from .recorder import ShellRecorder

    return ShellRecorder(name, shell=shell, append=append).run()


def stop(name: str | None = None, timeout: float = 10.0) -> str:
    """End a recording shell: NAME, else the one this command runs in, else the only one."""
    from ..sessions.journal import SessionStore
    from . import journal
    from .recorder import ENV_NAME, ENV_PID

    store = SessionStore()
    live = journal.recording(store.root)
    inside = os.environ.get(ENV_NAME)
    if name is None and inside:
        name = inside
    if name is None:
        if not live:
            raise InvalidArgument("no shell session is recording; airavata-magic session start NAME begins one")
        if len(live) > 1:
            raise InvalidArgument(f"several shell sessions are recording ({', '.join(sorted(live))}); "
                                  "airavata-magic session stop NAME")
        name = next(iter(live))
    pid = live.get(name)
    if pid is None and name == inside and os.environ.get(ENV_PID, "").isdigit():
        pid = int(os.environ[ENV_PID])
    if pid is None:
        raise InvalidArgument(f"no shell session named {name!r} is recording"
                              + (f" (recording: {', '.join(sorted(live))})" if live else ""))
    os.kill(pid, signal.SIGTERM)
    if name == inside:
        return f"stopping session {name!r}"  # this shell is about to end, and this command with it
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and name in journal.recording(store.root):
        time.sleep(0.05)
    if name in journal.recording(store.root):
        raise InvalidArgument(f"session {name!r} (recorder pid {pid}) did not stop within {timeout:g} s")
    return f"session {name!r} stopped"


def load(name: str, *, dry_run: bool = False) -> int:
    """Re-run a shell session's commands in a fresh bash (``replay``); ``dry_run`` prints them."""
    from . import replay

    nb = replay.read(name)
    if dry_run:
        print(replay.dry_run(name, nb))
        return 0
    shell = nb["metadata"]["airavata"]["session"].get("shell") or "/bin/bash"
    if not os.access(shell, os.X_OK):
        shell = "/bin/bash"
    sys.stdout.flush()
    return replay.load(name, nb, shell)
