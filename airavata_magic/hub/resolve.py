"""What a training task is given, checked and resolved: parameters, runtime, model, data.

Each function turns one user-facing argument into something a task can stage, or raises a
one-line ``InvalidArgument`` saying what is wrong and how to fix it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from .package import check_package, read_metadata

PARAMS: dict[str, type] = {"learning_rate": float, "batch_size": int, "lr_step_size": int, "lr_decay": float,
                           "epochs": int, "momentum": float, "seed": int}


def parse_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Typed training parameters; unknown keys and wrong types are one-line errors."""
    out: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key not in PARAMS:
            raise InvalidArgument(f"unknown training parameter {key!r}; known: {', '.join(PARAMS)}")
        try:
            v = PARAMS[key](value) if not isinstance(value, bool) else None
            if PARAMS[key] is int and float(value) != int(float(value)):
                raise ValueError
        except (TypeError, ValueError):
            v = None
        if v is None or v != v or (key != "seed" and v <= 0):
            raise InvalidArgument(f"training parameter {key} must be a positive {PARAMS[key].__name__}, got {value!r}")
        out[key] = v
    return out


def read_params_file(path: str) -> dict[str, Any]:
    """A YAML (or JSON) file of training parameters, e.g. ``learning_rate: 0.05``."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidArgument(f"cannot read params file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InvalidArgument(f"params file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if isinstance(doc, dict) and isinstance(doc.get("param_set"), dict):
        doc = doc["param_set"]  # NEURO-LEARN's files nest them
    if not isinstance(doc, dict):
        raise InvalidArgument(f"params file {path} must be a mapping, e.g. learning_rate: 0.05")
    return doc


def resolve_runtime(runtime: str, file: str | None) -> tuple[Any, Any]:
    """``--runtime R``: a live runtime or a preset -> (profile resource, RuntimeSpec)."""
    from ..profile import load_profile
    from ..runtime import LOCAL, RuntimeSpec

    prof = load_profile(file)
    if runtime == LOCAL:
        return prof.resource(LOCAL), RuntimeSpec()
    from .. import get_manager

    store = get_manager().store
    if store.exists(runtime):
        rt = store.load(runtime)
        return prof.resource(rt.resource), rt.spec
    if runtime in prof.presets:
        preset = prof.presets[runtime]
        res = preset.resource or preset.use[0].partition(":")[0]
        return prof.resource(res), preset.spec
    raise InvalidArgument(f"--runtime {runtime!r} is neither a runtime (%runtimes) nor a preset of the profile")


def model_folder(model: str, hub_file: str | None) -> Path:
    folder = Path(model).expanduser()
    if folder.is_dir():
        check_package(folder, read_metadata(folder, complete=False))
        return folder
    from .registry import Hub

    return Hub.from_profile(hub_file).fetch(model, "model")


def registered_folder(ref: str, file: str | None, runtime: str | None = None) -> Path | None:
    """The data folder of ``ref`` when it names a dataset registered with ``%dataset register``:
    prepared the storage way (read-only, in the dataset cache where ``runtime`` runs, a path on its
    side; None: this machine; a second use moves nothing). None when no such dataset is registered. A name both
    registered and published in the hub means the registered one (write OWNER/NAME for the hub's)."""
    from ..storage import dataset

    if not isinstance(ref, str) or dataset.find(ref, file) is None:
        return None
    return Path(dataset.prepare(ref, runtime, file=file, inside=True))


class ClusterFile(str):
    """An absolute path on the task's own resource (``RESOURCE:/path.npz``): linked, not copied."""


def data_file(ref: str, what: str, hub_file: str | None, resource: str = "local") -> "Path | ClusterFile":
    """A data reference: a path to an .npz, a dataset registered with ``%dataset`` or published in
    the hub (its first .npz file), or
    ``RESOURCE:/abs/path.npz`` on the resource the task runs on (large data stays where it is)."""
    import numpy as np

    where, sep, remote = ref.partition(":")
    if sep and remote.startswith("/") and where and "/" not in where and not Path(ref).exists():
        if where != resource:
            raise InvalidArgument(f"{what} {ref!r} is on {where}, but the task runs on {resource}: "
                                  f"copy it there first (%copy_data) or run the task on {where}")
        if not remote.endswith(".npz") or "\x00" in remote:
            raise InvalidArgument(f"{what} {ref!r}: give an .npz file with arrays X and y")
        if resource != "local":
            return ClusterFile(remote)
        ref = remote
    path = Path(ref).expanduser()
    folder = registered_folder(ref, hub_file) if not path.exists() else None
    if folder is not None:
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.npz"))
        if not files:
            raise InvalidArgument(f"dataset {ref!r} has no .npz file for {what}")
        path = folder / files[0]
    elif not path.exists():
        from .registry import Hub

        try:
            hub = Hub.from_profile(hub_file)
        except InvalidArgument:
            raise InvalidArgument(f"no dataset {ref!r}: not a file, not registered (%dataset list), and no model hub "
                                  "is configured") from None
        folder = hub.fetch(ref, "dataset")
        files = [f for f in hub.get(ref, "dataset")["files"] if f.endswith(".npz")]
        if not files:
            raise InvalidArgument(f"dataset {ref!r} has no .npz file for {what}")
        path = folder / files[0]
    if not path.is_file() or path.suffix != ".npz":
        raise InvalidArgument(f"{what} {ref!r}: give an .npz file with arrays X and y, or a dataset name "
                              "(%dataset list, %model list --datasets)")
    try:
        with np.load(path, allow_pickle=False) as d:
            if "X" not in d.files or "y" not in d.files:
                raise InvalidArgument(f"{what} {path} needs arrays X and y (has {', '.join(d.files) or 'none'})")
            if len(d["X"]) != len(d["y"]) or not len(d["y"]):
                raise InvalidArgument(f"{what} {path}: X and y must be non-empty and of equal length")
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"{what} {path} is not a readable .npz: {e}") from None
    return path
