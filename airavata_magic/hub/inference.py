"""Inference runs and modify-mode loads of hub models, here or on a runtime.

A run loads the model once and streams the input folder through it in batches
(``remote/infer.py``, the same file everywhere). In the notebook's own process (``runtime`` None
or ``local``) it is imported; on a runtime its kernel runs it with ``runpy`` next to a copy of the
package (uploaded once per model uuid to the resource's work_dir; into a Kubernetes pod through its
kernel connection, to ``~/.airavata-magic/hub-cache``), and the input and output folders are
paths on the runtime's side. Either way the caller gets the predictions as a DataFrame, with
``Results.json``'s figures in ``df.attrs["results"]``.
"""
from __future__ import annotations

import ast
import io
import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import InvalidArgument
from .package import NAME_RE

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["run", "run_on_new_runtime", "load_modify"]

_REMOTE = Path(__file__).parent / "remote"


def _package(model: str, file: str | None) -> tuple[Path, dict[str, Any]]:
    """A model reference (hub name or package folder) as a local folder and its metadata."""
    from .package import check_package, read_metadata

    folder = Path(model).expanduser()
    if folder.is_dir():
        meta = read_metadata(folder, complete=False)
        check_package(folder, meta)
    else:
        from .registry import Hub

        folder = Hub.from_profile(file).fetch(model, "model")
        meta = read_metadata(folder)
    if meta["type"] != "model":
        raise InvalidArgument(f"{model!r} is a dataset, not a model")
    return folder, meta


def load_session(folder: Path, meta: dict[str, Any]) -> str:
    """A computational model's session, copied into this user's sessions under the model's name,
    where ``%session show/load/export`` see it (its cells run wherever their magics say)."""
    from ..sessions.journal import JournalFile, SessionStore, new_metadata, read_tail_metadata

    nb = json.loads((folder / meta["session"]).read_text(encoding="utf-8"))
    store = SessionStore()
    name = meta["name"]
    if store.exists(name):
        old = (read_tail_metadata(store.path(name)) or {}).get("airavata", {}).get("session", {})
        if old.get("model") != meta.get("uuid", meta["name"]):
            raise InvalidArgument(f"you already have a session named {name!r} that is not this model's; "
                                  "rename it first (the model's session would replace it)")
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    md = new_metadata(name)
    md["airavata"]["session"].update(cells=len(cells), model=meta.get("uuid", meta["name"]))
    JournalFile(store.path(name), md, cells).close()
    return (f"session {name!r} loaded from model {name} {meta['version']} ({len(cells)} cells): "
            f"%session show {name} to read it, %session load {name} to run it, "
            f"%session export {name} {name}.ipynb to edit it")


def _frame(csv_bytes: bytes, results: dict[str, Any]):
    import pandas as pd

    df = pd.read_csv(io.BytesIO(csv_bytes), dtype={"input": str})
    df.attrs["results"] = results
    return df


def _check(batch_size: int, device: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 1_000_000:
        raise InvalidArgument(f"--batch-size must be a positive integer, got {batch_size!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidArgument(f"--device must be auto, cpu or cuda, not {device!r}")


def run(model: str, input_folder: str, output: str | None = None, *, runtime: str | None = None,
        batch_size: int = 32, device: str = "auto", file: str | None = None,
        progress: Callable[[int, int], None] | None = None) -> "pd.DataFrame":
    """Predict every input of ``input_folder`` with ``model``; returns the predictions DataFrame.

    Writes ``predictions.csv`` and ``Results.json`` into ``output`` (default
    ``predictions-<model name>`` beside the input folder)."""
    _check(batch_size, device)
    folder, meta = _package(model, file)
    if not isinstance(input_folder, str) or not input_folder.strip():
        raise InvalidArgument("--input-folder is required: a folder of .npy inputs (one sample each)")
    output = output or str(Path(input_folder).parent / f"predictions-{meta['name']}")
    if runtime in (None, "local"):
        from .remote import infer

        import pandas as pd

        from ..progress import Progress

        table: list = []
        shown = None if progress is not None else Progress(f"{meta['name']} inference", unit="inputs")

        def show(done: int, total: int) -> None:
            shown.set(done, total=total)

        try:
            results = infer.run(folder, input_folder, output, batch_size, device, progress or show, rows_out=table)
        except infer.InputError as e:  # the input folder: missing, or no inputs in it
            raise InvalidArgument(str(e)) from None
        finally:
            if shown is not None:
                shown.close()
        df = pd.DataFrame(table[1:], columns=table[0])
        df.attrs["results"] = results
        return df
    return _on_runtime(runtime, folder, meta, input_folder, output, batch_size, device)


def _remote_copy(backend: Any, folder: Path, meta: dict[str, Any]) -> str:
    """The package (and infer.py) on a remote resource, uploaded once per model uuid."""
    key = meta.get("uuid") or f"{meta['name']}-{meta['version']}"
    remote = f"{backend.work_dir()}/hub-cache/{key}"
    rc, out, _ = backend.run(f"test -s {shlex.quote(remote)}/.complete && echo yes; true")
    if out.strip() == "yes":
        return remote
    backend.run(f"umask 077 && mkdir -p -- {shlex.quote(remote)}")
    with backend.conn.sftp() as sftp:
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix != ".pyc":
                sftp.put(str(f), f"{remote}/{f.name}")
        sftp.put(str(_REMOTE / "infer.py"), f"{remote}/_airavata_infer.py")
    backend.run(f"echo ok > {shlex.quote(remote)}/.complete")
    return remote


def _runtime_place(runtime: str, folder: Path, meta: dict[str, Any]) -> tuple[Any, str, str, Callable[[str], bytes | None]]:
    """(manager, package path there, infer.py path there, reader of files there) for a live runtime."""
    from .. import get_manager

    if not NAME_RE.match(runtime):
        raise InvalidArgument(f"--runtime {runtime!r} is not a runtime name")
    manager = get_manager()
    rt = manager.get(runtime)
    backend = manager.backend_for(rt)
    if rt.resource == "local" or backend.kind == "local":
        return manager, str(folder.resolve()), str(_REMOTE / "infer.py"), \
            lambda p: Path(p).read_bytes() if Path(p).is_file() else None
    if backend.kind == "kubernetes":
        return _pod_place(manager, runtime, folder, meta)
    if not hasattr(backend, "conn"):
        raise InvalidArgument(f"model runs reach slurm, ssh, kubernetes and local runtimes; {runtime} is {backend.kind}")
    remote = _remote_copy(backend, folder, meta)
    return manager, remote, f"{remote}/_airavata_infer.py", lambda p: backend.conn.read_file(p)


def _pod_place(manager: Any, runtime: str, folder: Path, meta: dict[str, Any]) -> tuple[Any, str, str, Callable[[str], bytes | None]]:
    """The package (and infer.py) in a pod, sent once per model uuid through its kernel."""
    import shutil
    import tempfile

    from ..storage import kernelfiles
    from ..storage.copying import copy_ends
    from ..storage.ends import End

    key = meta.get("uuid") or f"{meta['name']}-{meta['version']}"
    home = kernelfiles.call(manager, runtime, "import os\nresult = os.path.expanduser('~')")
    remote = f"{home}/.airavata-magic/hub-cache/{key}"
    if not kernelfiles.info(manager, runtime, f"{remote}/.complete"):
        with tempfile.TemporaryDirectory() as tmp:
            pkg = Path(tmp) / key
            pkg.mkdir(mode=0o700)
            for f in sorted(folder.iterdir()):
                if f.is_file() and f.suffix != ".pyc":
                    shutil.copy(f, pkg / f.name)
            shutil.copy(_REMOTE / "infer.py", pkg / "_airavata_infer.py")
            (pkg / ".complete").write_text("ok\n")  # last into place: the tree is renamed in whole
            kernelfiles.mkdir(manager, runtime, f"{home}/.airavata-magic/hub-cache")
            copy_ends(End("local", str(pkg), f"model {meta['name']}"),
                      End("kernel", remote, f"{runtime}:{remote}", runtime=runtime, manager=manager),
                      recursive=True, progress=False)

    return manager, remote, f"{remote}/_airavata_infer.py", lambda p: kernelfiles.read_bytes(manager, runtime, p)


def _run_code(manager: Any, runtime: str, code: str) -> None:
    from ..relay import NotebookSink

    outcomes = manager.run([runtime], code, NotebookSink())
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        err = failed[0].error or {}
        raise InvalidArgument(f"on runtime {runtime}: {err.get('ename', 'error')}: {err.get('evalue', '')}")


def _on_runtime(runtime: str, folder: Path, meta: dict[str, Any], input_folder: str, output: str,
                batch_size: int, device: str):
    manager, pkg, infer_py, read = _runtime_place(runtime, folder, meta)
    # Every value enters the remote code as a Python literal (repr), never as code.
    code = (
        "import runpy as _am_r, json as _am_j, os as _am_os\n"
        f"_am_ns = _am_r.run_path({infer_py!r})\n"
        f"_am_out = _am_os.path.abspath({output!r})\n"
        f"_am_ns['run']({pkg!r}, {input_folder!r}, _am_out, {batch_size!r}, {device!r}, "
        f"progress=_am_ns['notebook_progress']({meta['name'] + ' inference on ' + runtime!r}))\n"
        "print('predictions in', _am_out)\n"
        "del _am_r, _am_j, _am_os, _am_ns, _am_out\n"
    )
    _run_code(manager, runtime, code)
    where = _abspath_there(manager, runtime, output)
    csv_bytes, results = read(f"{where}/predictions.csv"), read(f"{where}/Results.json")
    if csv_bytes is None or results is None:
        raise InvalidArgument(f"the run on {runtime} wrote no predictions into {where}")
    return _frame(csv_bytes, json.loads(results))


def _abspath_there(manager: Any, runtime: str, path: str) -> str:
    """``path`` made absolute against the runtime kernel's working directory."""
    if path.startswith("/"):
        return path
    outcomes = manager.run([runtime], "", _Quiet(), silent=True,
                           user_expressions={"cwd": f"__import__('os').path.abspath({path!r})"})
    value = outcomes[0].user_expressions.get("cwd", {})
    text = (value.get("data") or {}).get("text/plain")
    if not text:
        raise InvalidArgument(f"cannot resolve {path!r} on runtime {runtime}")
    return str(ast.literal_eval(text))  # a str repr produced by the kernel


class _Quiet:
    """A sink that drops output (for silent requests)."""

    def stream(self, *a: Any) -> None: ...
    def stream_packed(self, *a: Any) -> None: ...
    def display(self, *a: Any) -> None: ...
    def clear_output(self, *a: Any) -> None: ...
    def input(self, *a: Any) -> str: return ""
    def comm(self, *a: Any) -> None: ...


def load_modify(model: str, *, runtime: str | None = None, var: str = "model", device: str = "auto",
                file: str | None = None, namespace: dict[str, Any] | None = None) -> str:
    """Put the whole model (``load("modify", device)``, e.g. an ``nn.Module``) into a variable,
    in ``namespace`` (the notebook's) or in a runtime's kernel; returns a one-line summary."""
    if not var.isidentifier():
        raise InvalidArgument(f"--as {var!r} is not a Python variable name")
    _check(1, device)
    folder, meta = _package(model, file)
    if meta.get("kind") == "computational":
        return load_session(folder, meta)
    if runtime in (None, "local"):
        from .remote import infer

        obj = infer.load_entry(folder).load("modify", infer.pick_device(device))
        if namespace is not None:
            namespace[var] = obj
        return f"{var} = {type(obj).__name__} from {meta['name']} {meta['version']} (modify mode)"
    manager, pkg, infer_py, _ = _runtime_place(runtime, folder, meta)
    code = (f"import runpy as _am_r\n_am_ns = _am_r.run_path({infer_py!r})\n"
            f"{var} = _am_ns['load_entry']({pkg!r}).load('modify', _am_ns['pick_device']({device!r}))\n"
            "del _am_r, _am_ns\n")
    _run_code(manager, runtime, code)
    return f"{var} set on runtime {runtime}: {meta['name']} {meta['version']} (modify mode)"


def run_on_new_runtime(model: str, input_folder: str, output: str | None = None, *, preset: str,
                       cpu: int | None = None, gpu: int | None = None, node: str | None = None,
                       batch_size: int = 32, device: str = "auto", file: str | None = None,
                       timeout: float = 1800) -> "pd.DataFrame":
    """AstroHub's ``run(model, data, cpu, gpu, node)``: request a runtime from ``preset`` with those
    resources, run the inference there, and stop it again (also when the run fails)."""
    import secrets

    from .. import get_manager

    manager = get_manager()
    name = f"hubrun-{secrets.token_hex(3)}"
    manager.request(name, file=file, preset=preset, overrides={"cpus": cpu, "gpus": gpu, "node": node})
    try:
        manager.wait(name, timeout=timeout)
        return run(model, input_folder, output, runtime=name, batch_size=batch_size, device=device, file=file)
    finally:
        manager.stop(name)
