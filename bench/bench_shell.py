"""What recording costs per shell command: `true` typed at the prompt until the next prompt, in a
recorded session (``airavata-magic session start``) against the same bash under a plain pty.

    python bench/bench_shell.py [--repeats 100]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[1]


def per_command_ms(child: pexpect.spawn, prompt: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        child.sendline("true")
        child.expect(prompt)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=100)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-shell-"))
    (tmp / ".bashrc").write_text("PS1='plain> '\n")
    env = dict(os.environ, HOME=str(tmp), AIRAVATA_MAGIC_HOME=str(tmp / "home"), SHELL="/bin/bash",
               PYTHONPATH=str(ROOT))
    plain = pexpect.spawn("/bin/bash", ["--rcfile", str(tmp / ".bashrc"), "-i"], env=env, encoding="utf-8", timeout=30)
    plain.expect("plain> ")
    rec = pexpect.spawn(sys.executable, ["-m", "airavata_magic.cli", "session", "start", f"bench-{os.getpid()}"],
                        env=env, encoding="utf-8", timeout=30)
    prompt = r"\(rec bench-\d+\) plain> "
    rec.expect(prompt)
    for child in (plain, rec):
        child.delaybeforesend = None  # pexpect's default 50 ms pause before each send would dominate
    base = per_command_ms(plain, "plain> ", args.repeats)
    ours = per_command_ms(rec, prompt, args.repeats)
    for child in (plain, rec):
        child.sendline("exit")
        child.expect(pexpect.EOF)
    print(f"`true` at the prompt, median of {args.repeats}:")
    print(f"  bash under a pty (baseline)   {base:7.2f} ms")
    print(f"  recorded session              {ours:7.2f} ms   x{ours / base:.2f}")


if __name__ == "__main__":
    main()
