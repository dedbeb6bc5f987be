"""Plots (matplotlib, imported on use): gathered hits, and a scale run's time and cost."""
from __future__ import annotations

from typing import Any


def plot_hits(hits: Any, *, x: str = "time_s", y: str = "frequency_mhz", max_panels: int = 16) -> Any:
    """Frequency against time, one panel per input (the ``input`` column). Returns the Figure."""
    import matplotlib.pyplot as plt

    missing = [c for c in ("input", x, y) if c not in hits.columns]
    if missing:
        raise ValueError(f"the hits have no column(s) {', '.join(missing)}; columns: {', '.join(map(str, hits.columns))}")
    inputs = list(dict.fromkeys(hits["input"]))[:max_panels] or ["(no hits)"]
    cols = min(4, len(inputs))
    rows = (len(inputs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    mhz = y.endswith("_mhz")
    for ax, name in zip(axes.flat, inputs):
        part = hits[hits["input"] == name]
        base = float(part[y].min()) if len(part) else 0.0
        # narrowband drifts are Hz wide at GHz: plot Hz above the panel's lowest hit, named in the title
        values = (part[y] - base) * 1e6 if mhz else part[y]
        sc = ax.scatter(part[x], values, c=part["snr"] if "snr" in part else None, s=12, cmap="viridis")
        title = str(name).rsplit("/", 1)[-1] + (f"\n+ {base:.6f} MHz" if mhz and len(part) else "")
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(inputs):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(x)
    for ax in axes[:, 0]:
        ax.set_ylabel(y.replace("_mhz", " (Hz above)") if mhz else y)
    fig.tight_layout()
    if "snr" in hits and len(hits):
        fig.colorbar(sc, ax=axes, shrink=0.6, label="snr")
    return fig


def plot_scale(table: Any) -> Any:
    """Wall time and cost against world size (two panels). Returns the Figure."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.plot(table["world_size"], table["wall_time_s"], "o-")
    a.set_xlabel("world size")
    a.set_ylabel("wall time (s)")
    a.set_xticks(list(table["world_size"]))
    costs = table["cost"].astype(float)
    if costs.notna().any():
        b.plot(table["world_size"], costs, "o-", color="tab:red")
        b.set_ylabel("cost")
    else:
        b.plot(table["world_size"], table["samples_per_s"], "o-", color="tab:green")
        b.set_ylabel("samples/s (no prices in the profile)")
    b.set_xlabel("world size")
    b.set_xticks(list(table["world_size"]))
    fig.tight_layout()
    return fig
