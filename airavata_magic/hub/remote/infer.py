"""Batched inference over a folder of inputs: the model loads once, inputs stream in batches.

Self-contained on purpose (standard library and numpy; torch only when the model uses it): the
notebook imports it for runs in its own process, and a runtime's kernel runs the same file,
uploaded next to the model package, with ``runpy.run_path``. Nothing of airavata_magic is needed
on the runtime.

Writes ``predictions.csv`` (``input``, ``prediction``, ``score_<class>`` when the model gives
scores) and ``Results.json`` with the Cosmic-AI field names into the output folder.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import platform
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _cpu_info() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} x {os.cpu_count()}"


def _ram_gb() -> float:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 2)
    except (ValueError, OSError, AttributeError):
        return 0.0


def load_entry(package: str | Path) -> Any:
    """Import the package's entry module (``model.json``'s ``entry``) under a private name."""
    package = Path(package)
    meta = json.loads((package / "model.json").read_text())
    entry = package / meta["entry"]
    name = f"_hub_model_{abs(hash(str(entry.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, entry)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(package))  # helper modules beside the entry
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(package))
    if not callable(getattr(module, "load", None)):
        raise RuntimeError(f"{entry} defines no load(mode, device)")
    return module


def pick_device(device: str) -> str:
    """``auto``: CUDA when torch sees a GPU, else CPU."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


class InputError(Exception):
    """The input folder is missing or holds no inputs (a user's mistake, shown as one line)."""


def list_inputs(folder: str | Path, images: bool = False) -> list[str]:
    suffixes = (".npy",) + (IMAGE_SUFFIXES if images else ())
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"input folder {folder} does not exist")
    # scandir's d_type answers is_file() without a stat per file (folders of many small inputs)
    with os.scandir(folder) as it:  # names sort as strings: far cheaper than Path objects
        names = sorted(e.name for e in it if e.name.lower().endswith(suffixes) and e.is_file())
    files = [os.path.join(folder, n) for n in names]
    if not files:
        raise InputError(f"input folder {folder} has no {' or '.join(suffixes)} files")
    return files


def _read(path: str):
    import numpy as np

    if path.endswith((".npy", ".NPY")):
        return np.load(path, allow_pickle=False)
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def run(package: str | Path, input_folder: str | Path, output: str | Path, batch_size: int = 32,
        device: str = "auto", progress: Callable[[int, int], None] | None = None,
        rows_out: list | None = None) -> dict[str, Any]:
    """Predict every input; write predictions.csv and Results.json into ``output``; return the results.
    ``rows_out``, when given, receives the CSV's header and rows (a caller in this process then
    needs not read the file back)."""
    import numpy as np

    package, output = Path(package), Path(output)
    meta = json.loads((package / "model.json").read_text())
    files = list_inputs(input_folder, images=meta.get("inputs", {}).get("type") == "image")
    device = pick_device(device)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model = load_entry(package).load("inference", device)
    classes = meta.get("classes")
    rows: list[list[Any]] = []
    batch_times: list[float] = []
    n_scores = 0
    starts = list(range(0, len(files), batch_size))

    def read_batch(start: int):
        return np.stack([_read(p) for p in files[start:start + batch_size]])

    # One batch is read ahead in a thread while the model works on the current one (torch and
    # file reads release the GIL), so reading and computing overlap.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(read_batch, starts[0])
        for i, start in enumerate(starts):
            batch = ahead.result()
            if i + 1 < len(starts):
                ahead = pool.submit(read_batch, starts[i + 1])
            chunk = files[start:start + batch_size]
            t0 = time.perf_counter()
            out = np.asarray(model.predict(batch))
            batch_times.append(time.perf_counter() - t0)
            if out.ndim == 2:
                n_scores = out.shape[1]
                labels = out.argmax(axis=1).tolist()
                scores = np.round(out.astype(np.float64), 6).tolist()  # 6 decimals: short CSV, fast to write
                rows.extend([os.path.basename(p), classes[k] if classes and k < len(classes) else k, *sc]
                            for p, k, sc in zip(chunk, labels, scores))
            else:
                rows.extend([os.path.basename(p), v.item() if hasattr(v, "item") else v] for p, v in zip(chunk, out))
            if progress is not None:
                progress(min(start + batch_size, len(files)), len(files))
    wall = time.perf_counter() - wall0
    output.mkdir(parents=True, exist_ok=True)
    header = ["input", "prediction"] + [f"score_{classes[i] if classes and i < len(classes) else i}"
                                        for i in range(n_scores)]
    tmp = output / ".predictions.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, output / "predictions.csv")
    if rows_out is not None:
        rows_out.append(header)
        rows_out.extend(rows)
    infer_s = sum(batch_times)
    results: dict[str, Any] = {
        "total_cpu_time (seconds)": round(time.process_time() - cpu0, 4),
        "total_cpu_memory (MB)": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "execution_time (seconds/batch)": round(infer_s / max(1, len(batch_times)), 6),
        "num_batches": len(batch_times),
        "batch_size": batch_size,
        "device": device,
        "throughput_bps": round(len(batch_times) / infer_s, 3) if infer_s else None,
        "sample_persec": round(len(files) / infer_s, 3) if infer_s else None,
        "cpu_info": _cpu_info(),
        "ram_info (GB)": _ram_gb(),
        "num_samples": len(files),
        "total_time (seconds)": round(wall, 4),
    }
    if device.startswith("cuda"):  # untested here: no GPU on the machines this was built on
        import torch

        results["gpu_name"] = torch.cuda.get_device_name(0)
        results["gpu_memory (MB)"] = round(torch.cuda.max_memory_allocated() / 1024**2, 1)
    tmp = output / ".Results.json.tmp"
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, output / "Results.json")
    return results


def notebook_progress(label: str) -> Callable[[int, int], None]:
    """A progress callback that updates one display in place in a kernel (text on stderr otherwise)."""
    try:
        from IPython import get_ipython
        from IPython.display import display

        if get_ipython() is None:
            raise ImportError
        handle = display({"text/plain": f"{label}: starting"}, raw=True, display_id=True)

        def update(done: int, total: int) -> None:
            handle.update({"text/plain": f"{label}: {done}/{total} inputs ({100 * done // total}%)"}, raw=True)
        return update
    except ImportError:
        def write(done: int, total: int) -> None:
            sys.stderr.write(f"\r{label}: {done}/{total} inputs")
            if done == total:
                sys.stderr.write("\n")
        return write
