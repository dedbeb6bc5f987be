"""scikit-learn's bundled digits as the .npz splits and .npy input folders the hub reads.

Nothing is downloaded: the 1,797 images ship inside scikit-learn. ``write_splits(out)`` writes
``train.npz``, ``val.npz``, ``test.npz`` (arrays ``X`` (N, 8, 8) float32 and ``y`` int64) and
``inputs/`` (one ``.npy`` per test image) with ``inputs_labels.csv``; ``seed`` picks the split, so
a second seed gives a shifted split of the same data for fine-tuning.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def write_splits(out: str | Path, seed: int = 0, inputs: int = 200) -> Path:
    from sklearn.datasets import load_digits

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    X, y = d.images.astype(np.float32), d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_train, n_val = int(0.6 * len(y)), int(0.2 * len(y))
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    for name, idx in parts.items():
        np.savez(out / f"{name}.npz", X=X[idx], y=y[idx])
    folder = out / "inputs"
    folder.mkdir(exist_ok=True)
    with open(out / "inputs_labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["input", "label"])
        for i in parts["test"][:inputs]:
            np.save(folder / f"digit_{i:04d}.npy", X[i])
            w.writerow([f"digit_{i:04d}.npy", int(y[i])])
    return out


if __name__ == "__main__":
    import sys

    print(write_splits(sys.argv[1] if len(sys.argv) > 1 else "digits-data"))
