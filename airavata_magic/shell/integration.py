"""What the recorded bash does to tell the recorder about each command, and how it is read back.

The recorded shell sources the user's own ``~/.bashrc`` first, then this integration:

- ``PS0`` (printed after a command line is read, before it runs) emits a *command start* marker;
- ``PROMPT_COMMAND`` (before each prompt) writes the working directory and the last history
  entry (the command line as typed, pipes and quotes included) to a numbered file in the
  recorder's private directory, then emits a *command end* marker with the exit status and
  that number (builtins only: no process per prompt, and no byte of a command can end a marker);
  an empty line adds no history entry, so it is not a command;
- ``PS1`` starts with ``(rec NAME)`` so the user sees the shell is recorded.

Markers are OSC escape sequences (``ESC ] 6973 ; NONCE ; ... BEL``) carrying a random nonce of
this session, so program output cannot be mistaken for one. The recorder strips them before
the terminal sees the output. History settings that would hide a command (``HISTCONTROL``,
``HISTIGNORE``, history off, ``HISTSIZE=0``) are undone in the recorded shell only.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

OSC = b"\x1b]6973;"
BEL = b"\x07"


def rcfile(name: str, nonce: str, facts_dir: str) -> str:
    """The ``--rcfile`` of a recorded bash. Facts go to ``facts_dir/SEQ`` with builtins only:
    no process is started per prompt."""
    q = shlex.quote
    return f"""# airavata-magic: recorded shell session {name}
if [ -f ~/.bashrc ]; then . ~/.bashrc; fi
HISTCONTROL=
HISTIGNORE=
set -o history
if [ "${{HISTSIZE:-1}}" = 0 ]; then HISTSIZE=1000; fi
__am_nonce={q(nonce)}
__am_dir={q(facts_dir)}
__am_seq=0
__am_precmd() {{
    local st=$?
    __am_seq=$((__am_seq + 1))
    {{ printf '%s\\0' "$PWD"; HISTTIMEFORMAT= builtin history 1; }} > "$__am_dir/$__am_seq" 2>/dev/null
    printf '\\033]6973;%s;D;%s;%s\\007' "$__am_nonce" "$st" "$__am_seq"
    return $st
}}
PROMPT_COMMAND="__am_precmd;${{PROMPT_COMMAND}}"
PS0="\\e]6973;${{__am_nonce}};C\\a${{PS0}}"
PS1={q(f"(rec {name}) ")}"$PS1"
"""


@dataclass
class Marker:
    """One marker from the shell: ``C`` (a command starts) or ``D`` (a prompt: the last one ended)."""

    kind: str
    status: int | None = None
    seq: int | None = None  # D: the facts file this prompt wrote


@dataclass
class Facts:
    """What the shell wrote at a prompt: its working directory and last history entry."""

    cwd: str
    history: tuple[int, str] | None  # (history number, command line as typed)


_HIST_RE = re.compile(r"^\s*(\d+)\*?\s\s?(.*)$", re.DOTALL)


def parse_marker(body: bytes) -> Marker | None:
    """``C`` or ``D;STATUS;SEQ`` -> a Marker (None if malformed)."""
    parts = body.split(b";")
    try:
        if parts == [b"C"]:
            return Marker("C")
        if parts[0] == b"D" and len(parts) == 3:
            return Marker("D", int(parts[1]), int(parts[2]))
    except ValueError:
        return None
    return None


def read_facts(facts_dir: str, seq: int) -> Facts | None:
    """Read and remove the facts file of prompt ``seq`` (None if the shell could not write it)."""
    path = os.path.join(facts_dir, str(seq))
    try:
        with open(path, "rb") as f:
            raw = f.read()
        os.unlink(path)
    except OSError:
        return None
    cwd, _, hist = raw.partition(b"\0")
    m = _HIST_RE.match(hist.decode("utf-8", "replace").rstrip("\n"))
    return Facts(cwd.decode("utf-8", "replace"), (int(m.group(1)), m.group(2)) if m else None)


class MarkerScanner:
    """Splits the shell's output into plain bytes and markers, across reads of any size."""

    def __init__(self, nonce: str) -> None:
        self.prefix = OSC + nonce.encode() + b";"
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes | Marker]:
        """Plain output chunks and Markers, in order. A marker cut by the read boundary is kept
        until the rest arrives; so is a trailing ``ESC`` that may start one."""
        data = self._pending + data
        self._pending = b""
        out: list[bytes | Marker] = []
        while data:
            i = data.find(self.prefix)
            if i < 0:
                keep = _partial_prefix(data, self.prefix)
                if keep:
                    data, self._pending = data[:-keep], data[-keep:]
                if data:
                    out.append(data)
                break
            j = data.find(BEL, i + len(self.prefix))
            if j < 0:
                if i:
                    out.append(data[:i])
                self._pending = data[i:]
                break
            if i:
                out.append(data[:i])
            marker = parse_marker(data[i + len(self.prefix):j])
            if marker is not None:
                out.append(marker)
            data = data[j + 1:]
        return out


def _partial_prefix(data: bytes, prefix: bytes) -> int:
    """Length of the longest end of ``data`` that is a proper start of ``prefix``."""
    for n in range(min(len(prefix) - 1, len(data)), 0, -1):
        if data.endswith(prefix[:n]):
            return n
    return 0


_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>78]")


def clean_output(raw: bytes) -> str:
    """Terminal output as a log would show it: colours and cursor codes removed, ``\\r\\n`` as
    ``\\n``, a line redrawn with ``\\r`` (progress bars) kept as its last state."""
    text = _ANSI_RE.sub("", raw.decode("utf-8", "replace")).replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line:
            line = [seg for seg in line.split("\r") if seg][-1] if line.strip("\r") else ""
        lines.append(line)
    return "\n".join(lines)
