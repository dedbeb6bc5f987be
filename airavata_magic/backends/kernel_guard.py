"""Start an ipykernel that ends itself when no notebook has held it for a while (idle culling).

Run as a script by the ``local`` resource's interpreter (which may be another Python without
airavata_magic installed), so it uses the standard library and ipykernel only::

    python kernel_guard.py --holders DIR --idle SECONDS -- <ipykernel arguments>

``DIR`` holds one file per process that holds the runtime (``RuntimeStore.hold``): JSON with the
holder's pid and its start time. A thread in the kernel checks them every few seconds; once no
holder has been alive for ``SECONDS`` (counted from the kernel's start or the last holder seen),
it writes ``culled`` beside ``DIR`` (the reason, read by the backend's ``observe``) and ends the
kernel's process group. ``--idle 0`` disables culling.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

CHECK_EVERY_S = 2.0


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def held(holders: str) -> bool:
    """Is any process that registered in ``holders`` still alive (same pid, same start time)?"""
    try:
        names = os.listdir(holders)
    except OSError:
        return False
    for name in names:
        try:
            with open(os.path.join(holders, name)) as f:
                info = json.load(f)
            start = info.get("start")
            if start is not None and _start_time(int(info["pid"])) == start:
                return True
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return False


def watch(holders: str, idle: float, check_every: float = CHECK_EVERY_S) -> None:
    """Loop forever; end this process group once nobody held the kernel for ``idle`` seconds."""
    last_held = time.monotonic()
    while True:
        time.sleep(min(check_every, idle))
        if held(holders):
            last_held = time.monotonic()
            continue
        if time.monotonic() - last_held < idle:
            continue
        reason = f"idle: no notebook held it for {idle:g} s (AIRAVATA_MAGIC_IDLE_TIMEOUT)"
        try:
            with open(os.path.join(os.path.dirname(holders.rstrip("/")), "culled"), "w") as f:
                json.dump({"reason": reason, "at": time.time()}, f)
        except OSError:
            pass
        os.killpg(os.getpgrp(), signal.SIGTERM)  # the kernel leads its own process group
        time.sleep(5)
        os.killpg(os.getpgrp(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # this script's directory must not shadow the user's modules
    sep = argv.index("--")
    opts, kernel_args = argv[:sep], argv[sep + 1:]
    holders = opts[opts.index("--holders") + 1]
    idle = float(opts[opts.index("--idle") + 1])
    if idle > 0:
        threading.Thread(target=watch, args=(holders, idle), name="idle-guard", daemon=True).start()
    from ipykernel import kernelapp

    sys.argv = [sys.argv[0], *kernel_args]
    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main(sys.argv[1:])
