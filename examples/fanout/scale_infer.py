"""Inference of a small CNN over a fixed set of 28x28 images split by rank, for ``%scale_run``.

Each rank is started with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and AIRAVATA_RESULTS_DIR; it processes its share of N_SAMPLES images (seeded,
the same set on every rank), all-reduces the count so every rank knows the total, and writes
Results.json. ``SCALE_FAIL_RANK=r`` makes rank r exit 1 after the rendezvous (for tests).
"""
from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from airavata_rank_results import init_distributed, unique_share, write_results

N_SAMPLES = int(os.environ.get("SCALE_SAMPLES", "1024"))
BATCH = 64


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, 10)).eval()


def main() -> int:
    rank, world, _ = init_distributed()
    if os.environ.get("SCALE_FAIL_RANK") == str(rank):
        print(f"rank {rank}: failing on purpose", file=sys.stderr)
        return 1
    g = torch.Generator().manual_seed(1234)
    images = torch.rand(N_SAMPLES, 1, 28, 28, generator=g)
    mine = torch.tensor(list(unique_share(N_SAMPLES, rank, world)), dtype=torch.long)
    net = model()
    times = []
    with torch.no_grad():
        for i in range(0, len(mine), BATCH):
            t = time.perf_counter()
            net(images[mine[i:i + BATCH]]).argmax(1)
            times.append(time.perf_counter() - t)
    total = torch.tensor([len(mine)])
    torch.distributed.all_reduce(total)  # the ranks talk: a broken rendezvous shows here
    write_results(samples=len(mine), batch_times=times, batch_size=BATCH, device="cpu",
                  extra={"total_samples_seen_by_all_reduce": int(total.item())})
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
