"""A training task's batch program: ``python train.py TASK_DIR``.

Self-contained (numpy, torch, safetensors when installed): it runs in a Slurm job or a local
process where airavata_magic is not installed. Everything it needs is in ``TASK_DIR``::

    task.json         type, params, data file names, initial weights, device (written by the client)
    package/          the model package; ``load("modify", device)`` gives the nn.Module
    data/*.npz        arrays X and y for train / val / test
    init.safetensors  (finetune) the weights of the trained task it starts from

and everything it says is written there, each file by this process alone (no shared database,
no lock: both corrupt on cluster file systems)::

    status.json       {"state": RUNNING|FINISHED|FAILED, ...}, replaced atomically
    metrics.jsonl     one line per epoch: epoch, train_loss, val_loss, val_accuracy, lr, seconds
    weights.safetensors (or weights.pt)   the best epoch's weights, by validation accuracy
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

DEFAULTS = {"learning_rate": 0.05, "batch_size": 64, "lr_step_size": 10, "lr_decay": 0.5, "epochs": 10,
            "momentum": 0.9, "seed": 0}


def write_status(task: Path, **fields: Any) -> None:
    path = task / "status.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    old.update(fields, updated=time.time())
    tmp = task / ".status.json.tmp"
    tmp.write_text(json.dumps(old))
    os.replace(tmp, path)


def load_npz(path: Path):
    import numpy as np

    with np.load(path, allow_pickle=False) as d:
        if "X" not in d or "y" not in d:
            raise ValueError(f"{path.name} needs arrays X and y (found {', '.join(d.files)})")
        return d["X"].astype("float32"), d["y"].astype("int64")


def load_weights(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def save_weights(state: dict, task: Path) -> str:
    try:
        from safetensors.torch import save_file

        name = "weights.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(task / f".{name}.tmp"))
    except ImportError:
        import torch

        name = "weights.pt"
        torch.save(state, task / f".{name}.tmp")
    os.replace(task / f".{name}.tmp", task / name)
    return name


def evaluate(net, X, y, batch_size: int, device: str) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    net.eval()
    total, correct, n = 0.0, 0, len(y)
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb = torch.as_tensor(X[i:i + batch_size], device=device)
            yb = torch.as_tensor(y[i:i + batch_size], device=device)
            out = net(xb)
            total += F.cross_entropy(out, yb, reduction="sum").item()
            correct += (out.argmax(1) == yb).sum().item()
    return total / max(1, n), correct / max(1, n)


def train(task: Path) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F

    spec = json.loads((task / "task.json").read_text())
    p = {**DEFAULTS, **spec.get("params", {})}
    torch.manual_seed(int(p["seed"]))
    device = spec.get("device", "cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    sys.path.insert(0, str(task / "package"))
    sys.path.insert(0, str(Path(__file__).parent))
    from infer import load_entry  # the same loader inference uses

    net = load_entry(task / "package").load("modify", device)
    if not isinstance(net, torch.nn.Module):
        raise TypeError("the package's load('modify', device) must return a torch.nn.Module")
    if spec.get("init_weights"):
        net.load_state_dict(load_weights(task / spec["init_weights"]))
    Xtr, ytr = load_npz(task / spec["train"])
    Xva, yva = load_npz(task / spec["val"])
    opt = torch.optim.SGD(net.parameters(), lr=float(p["learning_rate"]), momentum=float(p["momentum"]))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=int(p["lr_step_size"]), gamma=float(p["lr_decay"]))
    bs, epochs = int(p["batch_size"]), int(p["epochs"])
    rng = np.random.default_rng(int(p["seed"]))
    best, best_epoch = -1.0, 0
    write_status(task, state="RUNNING", epoch=0, epochs=epochs, device=device)
    metrics = open(task / "metrics.jsonl", "a", buffering=1)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        net.train()
        order = rng.permutation(len(ytr))
        running = 0.0
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            xb, yb = torch.as_tensor(Xtr[idx], device=device), torch.as_tensor(ytr[idx], device=device)
            opt.zero_grad()
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            running += loss.item() * len(idx)
        sched.step()
        val_loss, val_acc = evaluate(net, Xva, yva, bs, device)
        line = {"epoch": epoch, "train_loss": running / len(ytr), "val_loss": val_loss, "val_accuracy": val_acc,
                "lr": lr, "seconds": round(time.perf_counter() - t0, 4)}
        metrics.write(json.dumps(line) + "\n")
        if val_acc > best:
            best, best_epoch = val_acc, epoch
            weights = save_weights({k: v.detach().cpu() for k, v in net.state_dict().items()}, task)
        write_status(task, epoch=epoch, best_val_accuracy=best, best_epoch=best_epoch)
    metrics.close()
    result: dict[str, Any] = {"weights": weights}
    if spec.get("test"):
        net.load_state_dict(load_weights(task / weights))
        Xte, yte = load_npz(task / spec["test"])
        result["test_loss"], result["test_accuracy"] = evaluate(net, Xte, yte, bs, device)
    write_status(task, state="FINISHED", finished=time.time(), **result)


def main(argv: list[str]) -> int:
    task = Path(argv[1]).resolve()
    write_status(task, state="RUNNING", started=time.time(), host=socket.gethostname(), pid=os.getpid())
    try:
        train(task)
    except BaseException as e:  # noqa: BLE001 - every failure ends up in status.json
        traceback.print_exc()
        write_status(task, state="FAILED", finished=time.time(), error=f"{type(e).__name__}: {e}"[:500])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
