"""The fan-out Python API: ``run``, ``wait``, ``gather``, ``retry``, ``status``, ``cancel``, ``runs``.

``%fanout`` and ``airavata-magic fanout`` are thin layers over these functions. A run is recorded
(``record.RunStore``) as soon as it is submitted, so it can be watched, gathered and
retried from another process or after the notebook kernel restarted.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from .. import profile as profiles
from ..errors import AiravataError, InvalidArgument
from .engine import DONE, FAILED, PENDING, RUNNING, Engine, TaskStatus
from .results import FanoutResult, gather_run
from .record import FanoutRun, RunStore, new_run_id

Progress = Callable[[FanoutRun, dict[int, TaskStatus]], None]
_store = RunStore()
ENGINES = {"slurm": "slurm:SlurmEngine", "local": "local:LocalEngine", "kubernetes": "kubernetes:KubernetesEngine"}


# -- choosing where ----------------------------------------------------------------------------
def engine_for(resource: Any, profile_path: str | None = None) -> Engine:
    """The fan-out engine of a profile resource (one per kind, chosen here only)."""
    import importlib

    target = ENGINES.get(resource.kind)
    if target is None:
        raise InvalidArgument(f"fan-out runs on slurm, kubernetes and local resources; {resource.name} is {resource.kind}")
    module, _, cls = target.partition(":")
    engine = getattr(importlib.import_module(f"{__package__}.{module}"), cls)(resource)
    engine.profile_path = profile_path
    return engine


def where(resource: str | None, runtime: str | None, file: str | None) -> tuple[Any, dict[str, Any]]:
    """(profile resource, spec values) from ``--resource R`` or ``--runtime PRESET``."""
    if bool(resource) == bool(runtime):
        raise InvalidArgument("give exactly one of --resource R or --runtime PRESET")
    prof = profiles.load_profile(file)
    if runtime and runtime != "local":
        preset = prof.presets.get(runtime)
        if preset is None:
            known = ", ".join(sorted(prof.presets)) or "none"
            raise InvalidArgument(f"unknown runtime preset {runtime!r}; presets in the profile: {known}")
        if preset.resource is None:
            raise InvalidArgument(f"preset {runtime!r} chooses with use:; give --resource for a fan-out")
        spec = {k: v for k, v in vars(preset.spec).items() if v is not None}
        return prof.resource(preset.resource), spec
    return prof.resource(resource or "local"), {}


def positive_int(value: Any, what: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"{what} must be a whole number, got {value!r}") from None
    if n < 1:
        raise InvalidArgument(f"{what} must be at least 1, got {n}")
    return n


def _split_location(text: str, prof: Any, resource: str) -> tuple[str | None, str]:
    """``RESOURCE:PATH`` -> (resource, path); ``STORAGE:PATH`` resolved through ``storage:``;
    anything else is a local path (None, path)."""
    head, sep, rest = text.partition(":")
    if sep and head in prof.storage:
        base = prof.storage[head]["location"]
        if "://" in base:
            raise InvalidArgument(f"storage {head!r} is a URL ({base}); fan-out reads local paths or RESOURCE:/path")
        return _split_location(base.rstrip("/") + "/" + rest.lstrip("/"), prof, resource)
    if sep and head in prof.resources and "/" not in head:
        return (None if head == "local" else head), rest
    return None, text


def _output_dir(output: str | None, run_id: str) -> Path:
    out = Path(output or run_id).expanduser().resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InvalidArgument(f"--output {out}: cannot create it ({e.strerror}); choose a writable folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InvalidArgument(f"--output {out} is not writable; choose a writable folder")
    return out


# -- the API -------------------------------------------------------------------------------------
def run(algorithm: str, inputs: str | list[str], *, resource: str | None = None, runtime: str | None = None,
        parallel: int = 4, output: str | None = None, wait: bool = True, timeout: float | None = None,
        file: str | None = None, progress: Progress | None = None) -> FanoutResult:
    """Run ``python ALGORITHM INPUT OUTDIR`` for every file matching ``inputs`` (a glob, or a list
    of globs and paths, as submitit's ``map_array`` takes a list), at most
    ``parallel`` at once, as ONE Slurm array / Kubernetes Indexed Job / local process pool.

    ``inputs`` is a glob: a local path, ``RESOURCE:/path/*.h5`` on the resource itself, or
    ``STORAGE:sub/*.h5`` through the profile's ``storage:``. Local inputs and a local algorithm
    are staged to a remote resource first; outputs come back to ``output`` (default: a folder
    named after the run). With ``wait`` the call returns the gathered result (``.hits``,
    ``.arrays``, ``.headers``, ``.failed``, ``.run_id``); without, it returns at once with every
    input pending. Bad arguments raise ``InvalidArgument`` before anything is submitted."""
    if not algorithm or not str(algorithm).strip():
        raise InvalidArgument("give the algorithm script, e.g. detect.py")
    if not inputs or (isinstance(inputs, str) and not inputs.strip()):
        raise InvalidArgument("give --inputs, a glob such as 'data/*.h5'")
    parallel = positive_int(parallel, "--parallel")
    res, spec = where(resource, runtime, file)
    prof = profiles.load_profile(file)
    run_id = new_run_id()
    engine = engine_for(res, prof.path)
    try:
        alg_res, alg_path = _split_location(str(algorithm), prof, res.name)
        if alg_res is not None and alg_res != res.name:
            raise InvalidArgument(f"the algorithm is on {alg_res}, but the fan-out runs on {res.name}")
        remote_dir = engine.run_dir(run_id) if engine.needs_staging else ""
        # inputs: each glob (or path) in order; local ones staged when the resource cannot see them
        names: list[str] = []
        seen: list[str] = []
        staged: list[tuple[str, str]] = []  # (resource path, local path)
        for pat in ([inputs] if isinstance(inputs, str) else list(inputs)):
            in_res, pattern = _split_location(str(pat), prof, res.name)
            if in_res is not None and in_res != res.name:
                raise InvalidArgument(f"the inputs {pat!r} are on {in_res}, but the fan-out runs on {res.name}")
            if in_res is None:
                found = sorted(str(Path(p).resolve()) for p in _glob(pattern))
                if not found:
                    raise InvalidArgument(f"--inputs {pat!r} matches no file here")
                for p in found:
                    names.append(p)
                    if engine.needs_staging:
                        seen.append(f"{remote_dir}/inputs/{len(seen):05d}-{Path(p).name}")
                        staged.append((seen[-1], p))
                    else:
                        seen.append(p)
            else:
                found = engine.glob(pattern)
                if not found:
                    raise InvalidArgument(f"--inputs {pat!r} matches no file on {res.name}")
                seen += found
                names += [engine.input_name(p) for p in found]
        # the algorithm
        if alg_res is None:
            alg_local = Path(alg_path).expanduser()
            if not alg_local.is_file():
                raise InvalidArgument(f"algorithm {alg_path!r} not found here; give a local file or {res.name}:/path/alg.py")
            alg_seen = f"{remote_dir}/alg/{alg_local.name}" if engine.needs_staging else str(alg_local.resolve())
        else:
            if not engine.is_file(alg_path):
                raise InvalidArgument(f"algorithm {alg_path!r} does not exist on {res.name}")
            alg_seen = alg_path
        out = _output_dir(output, run_id)
        if len(staged) == len(seen):  # a remote glob already ran the task interpreter there
            engine.check_python()
        run_rec = FanoutRun(run_id=run_id, algorithm=alg_seen, algorithm_source=str(algorithm), inputs=seen,
                            names=names, resource=res.name, kind=res.kind, parallel=parallel, output=str(out),
                            remote_dir=remote_dir, profile=prof.path, spec=spec)
        if engine.needs_staging:
            files = {r[len(remote_dir) + 1:]: local for r, local in staged}
            run_rec.staged = dict(staged)
            if alg_res is None:
                files[alg_seen[len(remote_dir) + 1:]] = str(alg_local)
            if files:
                engine.upload(files, remote_dir)
        _store.save(run_rec)
        run_rec.submissions.append(engine.submit(run_rec, list(range(run_rec.n))))
        _store.save(run_rec)
        if not wait:
            return gather_run(run_rec, pending=list(range(run_rec.n)))
        return _wait_and_gather(run_rec, engine, progress, timeout)
    finally:
        engine.close()


def _glob(pattern: str) -> list[str]:
    import glob

    return [p for p in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(p)]


def _wait_and_gather(run: FanoutRun, engine: Engine, progress: Progress | None, timeout: float | None) -> FanoutResult:
    statuses = wait_for(run, engine, progress, timeout)
    return _collect(run, engine, statuses)


def wait_for(run: FanoutRun, engine: Engine, progress: Progress | None = None,
             timeout: float | None = None) -> dict[int, TaskStatus]:
    """Poll until every task of the run is done or failed (or ``timeout`` seconds passed).
    Interrupting (Ctrl-C) leaves the tasks running: gather them later."""
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = 0.3
    while True:
        statuses = engine.poll(run)
        if progress is not None:
            progress(run, statuses)
        if all(s.state in (DONE, FAILED) for s in statuses.values()):
            return statuses
        if deadline is not None and time.monotonic() >= deadline:
            return statuses
        time.sleep(interval)
        interval = min(interval * 1.3, 3.0)  # a long array need not be asked every 0.3 s


def _collect(run: FanoutRun, engine: Engine, statuses: dict[int, TaskStatus]) -> FanoutResult:
    finished = [t for t, s in statuses.items() if s.state in (DONE, FAILED)]
    engine.fetch(run, finished)
    no_exit = {t: s.detail for t, s in statuses.items() if s.state == FAILED and s.exit_code is None
               and not (Path(run.output) / f"{t:05d}" / "exit").is_file()}
    pending = [t for t, s in statuses.items() if s.state in (PENDING, RUNNING)]
    return gather_run(run, failed_detail=no_exit, pending=pending)


def _open(run_id: str) -> tuple[FanoutRun, Engine]:
    run_rec = _store.load(run_id)
    prof = profiles.load_profile(run_rec.profile) if run_rec.profile and os.path.isfile(run_rec.profile) else profiles.load_profile()
    return run_rec, engine_for(prof.resource(run_rec.resource), prof.path)


def status(run_id: str) -> Any:
    """A DataFrame of the run's tasks: task, input, state, exit_code, detail."""
    import pandas as pd

    run_rec, engine = _open(run_id)
    try:
        st = engine.poll(run_rec)
    finally:
        engine.close()
    return pd.DataFrame([{"task": t, "input": run_rec.names[t], "state": s.state, "exit_code": s.exit_code,
                          "detail": s.detail} for t, s in sorted(st.items())])


def gather(run_id: str, *, wait: bool = False, timeout: float | None = None,
           progress: Progress | None = None) -> FanoutResult:
    """Gather a run (started earlier, perhaps with ``wait=False``): finished tasks are brought
    back and read; tasks still running are listed in ``.pending`` unless ``wait``."""
    run_rec, engine = _open(run_id)
    try:
        if wait:
            return _wait_and_gather(run_rec, engine, progress, timeout)
        return _collect(run_rec, engine, engine.poll(run_rec))
    finally:
        engine.close()


def retry(run_id: str, *, wait: bool = True, timeout: float | None = None,
          progress: Progress | None = None) -> FanoutResult:
    """Rerun only the inputs that failed in ``run_id`` (staging them again, so a repaired input
    is picked up) and return the whole run's results. Raises ``InvalidArgument`` when nothing failed."""
    run_rec, engine = _open(run_id)
    try:
        statuses = engine.poll(run_rec)
        if any(s.state in (PENDING, RUNNING) for s in statuses.values()):
            raise InvalidArgument(f"run {run_id} still has tasks running; wait for it (or %fanout gather {run_id}) first")
        before = _collect(run_rec, engine, statuses)
        tasks = sorted(int(t) for t in before.failed["task"])
        if not tasks:
            raise InvalidArgument(f"run {run_id} has no failed task to retry")
        if run_rec.staged:
            files = {}
            for t in tasks:
                remote = run_rec.inputs[t]
                local = run_rec.staged.get(remote)
                if local is not None:
                    if not os.path.isfile(local):
                        raise InvalidArgument(f"input {local} of task {t} no longer exists here")
                    files[remote[len(run_rec.remote_dir) + 1:]] = local
            if files:
                engine.upload(files, run_rec.remote_dir)
        run_rec.submissions.append(engine.submit(run_rec, tasks))
        _store.save(run_rec)
        if not wait:
            return gather_run(run_rec, pending=tasks)
        return _wait_and_gather(run_rec, engine, progress, timeout)
    finally:
        engine.close()


def cancel(run_id: str) -> None:
    """Cancel whatever of the run still runs (the array job, the Job, the local pool)."""
    run_rec, engine = _open(run_id)
    try:
        engine.cancel(run_rec)
    finally:
        engine.close()


def runs() -> Any:
    """A DataFrame of recorded fan-out runs: run_id, resource, inputs, submissions, output."""
    import pandas as pd

    return pd.DataFrame([{"run_id": r.run_id, "resource": r.resource, "kind": r.kind, "inputs": r.n,
                          "submissions": len(r.submissions), "algorithm": r.algorithm_source, "output": r.output}
                         for r in _store.all()], columns=["run_id", "resource", "kind", "inputs", "submissions",
                                                          "algorithm", "output"])


__all__ = ["run", "gather", "retry", "status", "cancel", "runs", "wait_for", "engine_for", "AiravataError"]
