"""The model hub: model packages, a registry searched as DataFrames, inference runs, training tasks.

Python API (the magics ``%model``/``%task`` and the CLI's ``model``/``task`` call these)::

    import airavata_magic as am                    # or: from airavata_magic.hub import Hub, tasks, inference
    Hub, tasks, inference = am.hub.Hub, am.hub.tasks, am.hub.inference
    hub = Hub.from_profile()                       # the profile's hub: {storage: NAME}
    hub.publish("digits-cnn/", visibility="public")
    hub.search_models(name="digits")              # a DataFrame
    inference.run("digits-cnn", "inputs/", runtime="hpc_cpu")
    t = tasks.new("t1", "train", "digits-cnn", "train.npz", "val.npz", runtime="local")
    tasks.list_tasks(); tasks.show(t.id); tasks.cancel(t.id); tasks.publish(t.id)

Nothing here imports torch, pandas or fsspec at import time.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Hub", "describe", "tasks", "inference"]


def __getattr__(name: str) -> Any:
    if name == "Hub":
        from .registry import Hub

        return Hub
    if name == "describe":
        from .package import describe

        return describe
    if name in ("tasks", "inference", "registry", "package"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(name)
