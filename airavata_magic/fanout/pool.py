"""The ``local`` fan-out engine's worker: ``python -m airavata_magic.fanout.pool LIST OUTPUTS N PYTHON ALG``.

A detached process (its own session), so a run outlives an interrupted cell and a CLI call
with ``--no-wait``, like a Slurm array does. It runs at most N tasks at once; each task runs
``PYTHON ALG INPUT OUTDIR`` with its stdout/stderr in the task directory and its exit code in
``exit`` (written last, atomically), the same layout as the Slurm array's.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_task(task: int, input_path: str, outputs: Path, python: str, algorithm: str) -> int:
    out = outputs / f"{task:05d}"
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    (out / "exit").unlink(missing_ok=True)
    with open(out / "stdout.log", "wb") as so, open(out / "stderr.log", "wb") as se:
        try:
            rc = subprocess.run([python, algorithm, input_path, str(out)], stdout=so, stderr=se,
                                stdin=subprocess.DEVNULL).returncode
        except OSError as e:
            se.write(f"cannot start {python}: {e}\n".encode())
            rc = 127
    tmp = out / ".exit.tmp"
    tmp.write_text(f"{rc}\n")
    os.replace(tmp, out / "exit")
    return rc


def main(argv: list[str]) -> int:
    list_file, outputs, parallel, python, algorithm = argv
    tasks = []
    for line in Path(list_file).read_text(encoding="utf-8").splitlines():
        task, _, path = line.partition("\t")
        tasks.append((int(task), path))
    with ThreadPoolExecutor(max_workers=max(1, int(parallel))) as pool:
        for task, path in tasks:
            pool.submit(run_task, task, path, Path(outputs), python, algorithm)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
