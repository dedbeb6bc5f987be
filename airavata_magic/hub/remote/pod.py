"""A training task's container program on Kubernetes: ``python pod.py TASK_TGZ WORK_DIR``.

Self-contained (standard library only; ``train.py`` brings torch): the pod has no shared file
system with the notebook, so the task travels in and its results travel out through the API
server alone:

- in: ``TASK_TGZ`` (the staged task folder, from the Job's Secret) is unpacked into ``WORK_DIR``
  (an emptyDir), and ``train.py WORK_DIR`` runs there as on Slurm; on a resource with a
  PersistentVolumeClaim the folder is already in the claim (``TASK_TGZ`` is ``-``) and the weights
  stay there (``--weights-stay``);
- while it runs, every change of ``status.json`` and every new line of ``metrics.jsonl`` is
  printed to the pod log as one marked line, so the notebook follows epochs live by reading the
  log (``@@airavata-task status {...}`` / ``@@airavata-task metrics {...}``);
- at the end, status, metrics and the weights file go to the log as one base64 tar between the
  fan-out's output markers, which the notebook unpacks into the task's local folder.

A SIGTERM (the Job deleted by ``%task cancel``) is passed on to the training process.
"""
from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

MARK = "@@airavata-task"
BEGIN, END = "@@airavata-outputs-begin", "@@airavata-outputs-end"  # the fan-out's output markers
POLL_S = 0.2


def echo(work: Path, last_status: str, sent: int) -> tuple[str, int]:
    """Print what changed since the last call; returns the new (status text, metric lines sent)."""
    try:
        status = (work / "status.json").read_text()
    except OSError:
        status = last_status
    try:
        lines = (work / "metrics.jsonl").read_text().split("\n")[:-1]  # complete lines only
    except OSError:
        lines = []
    for line in lines[sent:]:
        print(f"{MARK} metrics {line.strip()}", flush=True)
    if status != last_status:
        try:
            print(f"{MARK} status {json.dumps(json.loads(status))}", flush=True)
        except ValueError:
            return last_status, max(sent, len(lines))  # not replaced atomically (never by train.py): next time
    return status, max(sent, len(lines))


def outputs(work: Path, with_weights: bool = True) -> bytes:
    """A tar of what the notebook keeps: status, metrics and (unless they stay) the weights file."""
    names = ["status.json", "metrics.jsonl"]
    try:
        weights = json.loads((work / "status.json").read_text()).get("weights")
    except (OSError, ValueError):
        weights = None
    if with_weights and weights and "/" not in weights:
        names.append(weights)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in names:
            if (work / name).is_file():
                tar.add(work / name, arcname=name)
    return buf.getvalue()


def main(argv: list[str]) -> int:
    # TASK_TGZ "-": the task folder is already in WORK_DIR (a PersistentVolumeClaim), and
    # "--weights-stay" leaves the weights there for the notebook to fetch, out of the log.
    archive, work = argv[1], Path(argv[2])
    with_weights = "--weights-stay" not in argv[3:]
    work.mkdir(parents=True, exist_ok=True)
    if archive != "-":
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(work, filter="data")
            else:  # pragma: no cover - older Pythons; the archive is the notebook's own staging
                tar.extractall(work)
    proc = subprocess.Popen([sys.executable, str(work / "train.py"), str(work)], cwd=work)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    status, sent = "", 0
    while True:
        ended = proc.poll() is not None
        status, sent = echo(work, status, sent)
        if ended:
            break
        time.sleep(POLL_S)
    data = base64.b64encode(outputs(work, with_weights)).decode()
    print(BEGIN, flush=True)
    for i in range(0, len(data), 76):
        print(data[i:i + 76])
    print(END, flush=True)
    rc = proc.returncode
    return 128 - rc if rc < 0 else rc  # killed by signal N: exit 128+N, as a shell reports it


if __name__ == "__main__":
    sys.exit(main(sys.argv))
