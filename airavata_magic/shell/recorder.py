"""``airavata-magic session start NAME`` in a terminal: the user's bash under a pseudo-terminal,
every command journaled when its prompt comes back.

The recorder sits between the user's terminal and the shell's pty: keystrokes go in unchanged,
output comes out unchanged except for the integration markers (``integration.py``), which it
strips and uses to cut the output into commands. Input is never recorded; while the pty has
echo off (a password prompt), typed text is only remembered as a secret so that it is redacted
if it shows up later. Each command is appended to the journal as it completes, so a recorder
killed with ``kill -9`` leaves every completed command on disk.
"""
from __future__ import annotations

import errno
import fcntl
import os
import pty
import secrets
import select
import shutil
import signal
import sys
import tempfile
import termios
import time
import tty
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from . import integration
from . import journal as shell_journal

HEAD_RAW = 64 * 1024  # raw bytes kept from the start of a command's output
TAIL_RAW = 256 * 1024  # and from its end (the cap is applied to the cleaned text)
ENV_NAME, ENV_PID = "AIRAVATA_SHELL_SESSION", "AIRAVATA_SHELL_SESSION_PID"


def find_shell(shell: str | None = None) -> str:
    """The shell to record: ``shell``, else ``$SHELL``, else bash. Only bash is supported."""
    path = shell or os.environ.get("SHELL") or "/bin/bash"
    if os.path.basename(path) != "bash":
        raise InvalidArgument(f"shell sessions record bash, and $SHELL is {path}; "
                              "run: SHELL=/bin/bash airavata-magic session start NAME")
    if not os.access(path, os.X_OK):
        raise InvalidArgument(f"cannot run the shell {path}; set $SHELL to your bash")
    return path


class _Command:
    """A command between its start marker and the next prompt."""

    def __init__(self) -> None:
        self.t0, self.started = time.monotonic(), time.time()
        self.head, self.tail = bytearray(), bytearray()
        self.total = 0
        self.hidden_input = False

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = HEAD_RAW - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        self.tail += data
        if len(self.tail) > 2 * TAIL_RAW:
            del self.tail[:-TAIL_RAW]

    def output(self) -> str:
        gap = self.total - len(self.head) - len(self.tail)
        raw = bytes(self.head) + (f"\n[... {gap} bytes ...]\n".encode() if gap > 0 else b"") + bytes(self.tail)
        return integration.clean_output(raw)


class ShellRecorder:
    """Runs one recorded shell; ``run()`` returns when the shell exits or a stop is asked for."""

    def __init__(self, name: str, shell: str | None = None, append: bool = False) -> None:
        from ..sessions import journal
        from ..sessions.recorder import _lock_session
        from ..sessions.redact import Redactor

        journal.validate_session_name(name)
        if os.environ.get(ENV_NAME):
            raise InvalidArgument(f"this shell is already recording session {os.environ[ENV_NAME]!r}; "
                                  "exit it (or airavata-magic session stop) first")
        self.name, self.shell = name, find_shell(shell)
        self.store = journal.SessionStore()
        path = self.store.path(name)
        if path.exists() and not append:
            raise InvalidArgument(f"session {name!r} exists ({path}); add --append to continue it, "
                                  "or choose another name")
        self._lockfd = _lock_session(path)
        cells: list[dict[str, Any]] = []
        meta = journal.new_metadata(name, "bash")
        if path.exists():
            old = journal.read_session(path)
            if old["metadata"].get("airavata", {}).get("session", {}).get("kind") != "shell":
                os.close(self._lockfd)
                raise InvalidArgument(f"session {name!r} is not a shell session; choose another name")
            cells, meta = old["cells"], old["metadata"]
        meta["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        meta["airavata"]["session"].update(kind="shell", shell=self.shell)
        self.journal = journal.JournalFile(path, meta, cells)
        self.redactor = Redactor()
        self.nonce = secrets.token_hex(8)
        self._facts_dir = ""
        self._stop = False
        self._resize = False
        self._hidden = bytearray()
        self._current: _Command | None = None
        self._cwd: str | None = None
        self._last_hist: int | None = None
        self.recorded = 0

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> int:
        tmp = self._facts_dir = tempfile.mkdtemp(prefix="airavata-shell-")  # 0700: facts may hold secrets
        rc = Path(tmp) / "rc.bash"
        fd = os.open(rc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(integration.rcfile(self.name, self.nonce, tmp))
        state = shell_journal.write_state(self.store.root, self.name, os.getpid())
        env = dict(os.environ, **{ENV_NAME: self.name, ENV_PID: str(os.getpid())})
        stdin_tty = os.isatty(0)
        saved = termios.tcgetattr(0) if stdin_tty else None
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)}
        old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, self._on_signal)
        print(f"recording shell session {self.name!r} to {self.journal.path}; "
              "`exit` or `airavata-magic session stop` ends it", file=sys.stderr, flush=True)
        pid, master = pty.fork()
        if pid == 0:  # the child: the user's bash, interactive, with our rc file
            try:
                os.execve(self.shell, [self.shell, "--rcfile", str(rc), "-i"], env)
            finally:
                os._exit(127)
        status = 0
        try:
            self._copy_winsize(master)
            if stdin_tty:
                tty.setraw(0)
            status = self._loop(pid, master)
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSAFLUSH, saved)
            for s, h in old_handlers.items():
                signal.signal(s, h)
            os.close(master)
            self.journal.close()
            os.close(self._lockfd)
            try:
                os.unlink(state)
            except OSError:
                pass
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"\nsession {self.name!r} stopped: {self.recorded} command(s) recorded "
              f"({len(self.journal.cells)} in all) in {self.journal.path}", file=sys.stderr, flush=True)
        return status

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGWINCH:
            self._resize = True
        else:
            self._stop = True

    def _copy_winsize(self, master: int) -> None:
        if os.isatty(0):
            try:
                fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
            except OSError:
                pass

    def _loop(self, pid: int, master: int) -> int:
        scanner = integration.MarkerScanner(self.nonce)
        inputs = [master, 0]
        hup_at: float | None = None
        while True:
            if self._resize:
                self._resize = False
                self._copy_winsize(master)
            if self._stop and hup_at is None:
                hup_at = time.monotonic()
                _signal_group(pid, signal.SIGHUP)
            if hup_at is not None and time.monotonic() - hup_at > 3:
                _signal_group(pid, signal.SIGKILL)
            try:
                ready, _, _ = select.select(inputs, [], [], 0.25)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break
                for item in scanner.feed(data):
                    if isinstance(item, bytes):
                        _write_all(1, item)
                        if self._current is not None:
                            self._current.add(item)
                    else:
                        self._on_marker(item)
            if 0 in ready:
                data = os.read(0, 4096)
                if not data:
                    inputs.remove(0)  # our stdin ended; the shell keeps running until it exits
                    continue
                self._note_hidden_input(master, data)
                _write_all(master, data)
        _, wstatus = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(wstatus) if not self._stop else 0

    def _note_hidden_input(self, master: int, data: bytes) -> None:
        """Keys typed while the pty does not echo (line mode, echo off: a password prompt) are
        never stored; the typed line is learned as a secret so it is redacted wherever it appears."""
        try:
            lflag = termios.tcgetattr(master)[3]
        except termios.error:
            return
        if lflag & termios.ECHO or not lflag & termios.ICANON:
            return  # echo on, or raw mode (readline, editors) where the program echoes itself
        if self._current is not None:
            self._current.hidden_input = True
        for b in data:
            if b in (10, 13):
                self.redactor.learn(self._hidden.decode("utf-8", "replace"))
                self._hidden.clear()
            elif b in (8, 127):
                del self._hidden[-1:]
            else:
                self._hidden.append(b)

    def _on_marker(self, m: integration.Marker) -> None:
        if m.kind == "C":
            if self._current is None:
                self._current = _Command()
            return
        cmd, self._current = self._current, None
        facts = integration.read_facts(self._facts_dir, m.seq) if m.seq is not None else None
        if facts is None:
            return
        hist = facts.history[0] if facts.history else None
        # A new history entry means a command line was run; an empty line adds none.
        if cmd is not None and facts.history is not None and hist != self._last_hist and self._cwd is not None:
            self._record(facts.history[1], cmd, m.status if m.status is not None else 0, self._cwd)
        self._last_hist = hist if hist is not None else self._last_hist
        self._cwd = facts.cwd or self._cwd

    def _record(self, command: str, cmd: _Command, status: int, cwd: str) -> None:
        if self._hidden:
            self.redactor.learn(self._hidden.decode("utf-8", "replace"))
            self._hidden.clear()
        text = self.redactor.text(command.rstrip("\n"))
        output = self.redactor.text(cmd.output())
        self.journal.append(shell_journal.command_cell(
            text, output, cwd=cwd, exit_status=status, started=cmd.started,
            duration=time.monotonic() - cmd.t0, output_bytes=cmd.total, hidden_input=cmd.hidden_input))
        self.recorded += 1


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the shell leads its own session and process group (pty.fork)
    except ProcessLookupError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            n = os.write(fd, data)
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno in (errno.EIO, errno.EBADF):
                return  # the other side is gone
            raise
        data = data[n:]
