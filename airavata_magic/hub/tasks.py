"""Training tasks (NEURO-LEARN's shape): train or fine-tune a hub model as a real batch job.

``new()`` stages a task folder (task.json, the model package, the data, the training program),
submits it to the runtime's resource and returns at once (state SCHEDULED). The task's record
(which job, where its folder is) is kept per user under ``$AIRAVATA_MAGIC_HOME/tasks/``; its
progress is in its own folder (``status.json``, ``metrics.jsonl``, weights), written by the job
alone. A task's state combines both, and the scheduler's word wins: a job that was cancelled or
died is KILLED or FAILED even when its last status said RUNNING.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import paths
from ..errors import AiravataError, InvalidArgument
from . import schedulers as sch
from . import resolve
from .package import NAME_RE

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Task", "new", "list_tasks", "show", "wait", "metrics", "log_tail", "cancel", "publish", "load"]

STATES = ("SCHEDULED", "RUNNING", "FINISHED", "FAILED", "KILLED")
TERMINAL = ("FINISHED", "FAILED", "KILLED")
TYPES = ("train", "finetune")
_ID = re.compile(r"^TASK\d{16}$")


@dataclass
class Task:
    """One training task's record (what the client knows; progress is read from its folder)."""

    id: str
    name: str
    type: str
    model: str
    params: dict[str, Any]
    data: dict[str, str]
    runtime: str
    resource: str
    kind: str
    job_id: str = ""
    task_dir: str = ""  # where the task runs (local path or path on the resource)
    trained_task_id: str | None = None
    submitted: float = 0.0
    state: str = "SCHEDULED"
    reason: str = ""
    cancelled: bool = False
    status: dict[str, Any] = field(default_factory=dict)  # the last status.json read
    profile: str | None = None


def _dir() -> Path:
    return paths.private_dir(paths.home() / "tasks")


def staging(task_id: str) -> Path:
    """The local folder staged for a task (also where a local task runs)."""
    return _dir() / task_id


def save(task: Task) -> None:
    paths.write_json(_dir() / f"{task.id}.json", asdict(task))


def load(task_id: str) -> Task:
    """The record of one task (a one-line error for an unknown id)."""
    if not isinstance(task_id, str) or not _ID.match(task_id):
        raise InvalidArgument(f"{task_id!r} is not a task id (TASKyyyymmddHHMMSSnn; %task list shows them)")
    try:
        return Task(**paths.read_json(_dir() / f"{task_id}.json"))
    except FileNotFoundError:
        raise InvalidArgument(f"no task {task_id} (%task list shows your tasks)") from None


def new_id(now: float | None = None) -> str:
    """``TASKyyyymmddHHMMSSnn``: the UTC second, and a counter within it."""
    stamp = _dt.datetime.fromtimestamp(now or time.time(), _dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    for n in range(100):
        tid = f"TASK{stamp}{n:02d}"
        try:
            (_dir() / tid).mkdir(mode=0o700)  # the folder claims the id (atomic)
            return tid
        except FileExistsError:
            continue
    raise InvalidArgument("more than 100 tasks in one second; try again")


def _weights_of(task: Task) -> tuple[str, bytes]:
    """(file name, bytes) of a finished task's weights; one-line errors otherwise."""
    refresh(task)
    if task.state != "FINISHED":
        raise InvalidArgument(f"task {task.id} is {task.state}, not FINISHED: it has no trained weights to start from")
    name = task.status.get("weights")
    data = sch_of(task).read(task.task_dir, name) if name else None
    if not data:
        raise InvalidArgument(f"task {task.id} finished without a weights file")
    return name, data


# -- the API ------------------------------------------------------------------------------------
def new(name: str, type: str, model: str, train_data: str, val_data: str, *, runtime: str,
        test_data: str | None = None, params: dict[str, Any] | None = None, trained_task_id: str | None = None,
        device: str = "auto", file: str | None = None) -> Task:
    """Stage and submit a training task; returns at once with its id (state SCHEDULED).

    ``type`` is ``train`` (from the package's weights as they are; untrained = from scratch) or
    ``finetune`` (from the weights of ``trained_task_id``, which must have FINISHED)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(f"task name {name!r}: use letters, digits, '_', '.', '-'")
    if type not in TYPES:
        raise InvalidArgument(f"--type must be train or finetune, not {type!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidArgument(f"--device must be auto, cpu or cuda, not {device!r}")
    if type == "finetune" and not trained_task_id:
        raise InvalidArgument("a finetune task needs --trained-task-id ID (the task whose weights it starts from)")
    if type == "train" and trained_task_id:
        raise InvalidArgument("--trained-task-id goes with --type finetune")
    clean = resolve.parse_params(params)
    resource, spec = resolve.resolve_runtime(runtime, file)
    scheduler = sch.scheduler_for(resource, file)
    package = resolve.model_folder(model, file)
    data = {"train": resolve.data_file(train_data, "--train-data", file, resource.name),
            "val": resolve.data_file(val_data, "--val-data", file, resource.name)}
    if test_data:
        data["test"] = resolve.data_file(test_data, "--test-data", file, resource.name)
    init = _weights_of(load(trained_task_id)) if trained_task_id else None
    task_id = new_id()
    staged = staging(task_id)
    try:
        # The whole package, its own weights included: its load() may read them; a finetune then
        # replaces them with the trained task's (init_weights).
        shutil.copytree(package, staged / "package", ignore=shutil.ignore_patterns("__pycache__"))
        (staged / "data").mkdir()
        links = {}
        for split, path in data.items():
            if isinstance(path, resolve.ClusterFile):
                links[f"data/{split}.npz"] = str(path)  # already on the cluster: linked there
            else:
                shutil.copy2(path, staged / "data" / f"{split}.npz")
        remote = Path(__file__).parent / "remote"
        for script in ("train.py", "infer.py"):
            shutil.copy2(remote / script, staged / script)
        spec_json: dict[str, Any] = {"type": type, "params": clean, "device": device,
                                     **{k: f"data/{k}.npz" for k in data}}
        if init is not None:
            spec_json["init_weights"] = "init" + Path(init[0]).suffix
            (staged / spec_json["init_weights"]).write_bytes(init[1])
        (staged / "task.json").write_text(json.dumps(spec_json, indent=1))
        job_id, task_dir = scheduler.submit(task_id, staged, spec, links)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    task = Task(id=task_id, name=name, type=type, model=model, params=clean,
                data={k: str(v) for k, v in zip(data, (train_data, val_data, test_data))},
                runtime=runtime, resource=resource.name, kind=resource.kind, job_id=job_id, task_dir=task_dir,
                trained_task_id=trained_task_id, submitted=time.time(), profile=file)
    save(task)
    return task


_schedulers: dict[tuple[str | None, str], Any] = {}


def sch_of(task: Task) -> Any:
    """The scheduler that runs ``task`` (one per profile and resource, reused)."""
    key = (task.profile, task.resource)
    if key not in _schedulers:
        from ..profile import load_profile

        _schedulers[key] = sch.scheduler_for(load_profile(task.profile).resource(task.resource), task.profile)
    return _schedulers[key]


def _combine(task: Task, view: sch.JobView) -> tuple[str, str]:
    """The task's state from the scheduler's view and its own status.json (scheduler wins)."""
    own = task.status.get("state")
    if view.phase == sch.PENDING:
        return "SCHEDULED", view.reason
    if view.phase == sch.RUNNING:
        return "RUNNING", ""
    if view.phase == sch.CANCELLED or (task.cancelled and own != "FINISHED"):
        return "KILLED", "cancelled" if task.cancelled else view.reason
    if view.phase == sch.FAILED:
        return "FAILED", view.reason + (f"; {task.status['error']}" if task.status.get("error") else "")
    if own == "FINISHED":
        return "FINISHED", ""
    if own == "FAILED":
        return "FAILED", task.status.get("error", "failed")
    return "FAILED", f"the job ended without a final status ({view.reason or 'no reason given'}); see job.log"


def refresh(*tasks: Task, strict: bool = True) -> None:
    """Bring tasks' states up to date (one scheduler query per resource); saves the records.
    ``strict=False`` (listings) keeps a task whose resource cannot be reached as it was, with why."""
    live = [t for t in tasks if t.state not in TERMINAL]
    by_sched: dict[int, tuple[Any, list[Task]]] = {}
    for t in live:
        try:
            s = sch_of(t)
        except AiravataError as e:
            if strict:
                raise
            t.reason = f"not refreshed: {e}"
            continue
        by_sched.setdefault(id(s), (s, []))[1].append(t)
    for s, group in by_sched.values():
        try:
            views = s.observe({t.id: t.job_id for t in group})
        except AiravataError as e:
            if strict:
                raise
            for t in group:
                t.reason = f"not refreshed: {e}"
            continue
        for t in group:
            raw = s.read(t.task_dir, "status.json")
            if raw:
                try:
                    t.status = json.loads(raw)
                except ValueError:
                    pass  # mid-replace on a file system without atomic rename: next time
            t.state, t.reason = _combine(t, views[t.id])
            save(t)


def metrics(task: Task) -> "pd.DataFrame":
    """The task's per-epoch metrics as a DataFrame (empty before the first epoch)."""
    import pandas as pd

    raw = sch_of(task).read(task.task_dir, "metrics.jsonl") or b""
    rows = [json.loads(line) for line in raw.decode().splitlines() if line.strip().endswith("}")]
    return pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"])


def log_tail(task: Task, lines: int = 15) -> str:
    """The last lines of the task's job log (its program's output and traceback)."""
    raw = sch_of(task).read(task.task_dir, "job.log", max_bytes=8192) or b""
    return "\n".join(raw.decode(errors="replace").splitlines()[-lines:])


def list_tasks() -> "pd.DataFrame":
    """Every task of this user as a DataFrame (MLflow's shape: ``params.*``, ``metrics.*``)."""
    import pandas as pd

    tasks = [load(p.stem) for p in sorted(_dir().glob("TASK*.json"))]
    refresh(*tasks, strict=False)
    rows = []
    for t in tasks:
        end = t.status.get("finished") or (None if t.state not in TERMINAL else t.status.get("updated"))
        start = t.status.get("started")
        row = {"id": t.id, "name": t.name, "type": t.type, "model": t.model, "status": t.state,
               "epoch": t.status.get("epoch", 0), "best_val_accuracy": t.status.get("best_val_accuracy"),
               "runtime": t.runtime, "job_id": t.job_id,
               "started": _dt.datetime.fromtimestamp(start).strftime("%Y-%m-%d %H:%M:%S") if start else None,
               "duration_s": round((end or time.time()) - start, 1) if start else None, "reason": t.reason}
        row.update({f"params.{k}": v for k, v in t.params.items()})
        if "test_accuracy" in t.status:
            row["metrics.test_accuracy"] = t.status["test_accuracy"]
        rows.append(row)
    cols = ["id", "name", "type", "model", "status", "epoch", "best_val_accuracy", "runtime", "job_id",
            "started", "duration_s", "reason"]
    return pd.DataFrame(rows, columns=cols + sorted({k for r in rows for k in r} - set(cols)))


def show(task_id: str) -> tuple[Task, "pd.DataFrame"]:
    """One task, refreshed, and its metrics DataFrame."""
    task = load(task_id)
    refresh(task)
    return task, metrics(task)


def wait(task_id: str, timeout: float = 600, on_update: Callable[[Task, Any], None] | None = None,
         poll: float = 0.5) -> Task:
    """Follow a task until it ends (or ``timeout`` s), calling ``on_update(task, metrics)``."""
    deadline = time.monotonic() + timeout
    seen = -1
    while True:
        task, table = show(task_id)
        if on_update is not None and (len(table) != seen or task.state in TERMINAL):
            on_update(task, table)
            seen = len(table)
        if task.state in TERMINAL:
            return task
        if time.monotonic() >= deadline:
            raise InvalidArgument(f"task {task_id} still {task.state} after {timeout:.0f} s")
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def cancel(task_id: str) -> str:
    """Cancel a task's job; the task ends KILLED (a finished task stays as it is)."""
    task = load(task_id)
    refresh(task)
    if task.state in TERMINAL:
        return f"task {task_id} already {task.state}"
    task.cancelled = True
    save(task)
    sch_of(task).cancel(task.job_id)
    return f"cancelled task {task_id} ({task.kind} job {task.job_id})"


def publish(task_id: str, *, name: str | None = None, version: str | None = None, visibility: str = "private",
            group: str | None = None, shared_with: list[str] | None = None, file: str | None = None):
    """Turn a finished task's weights into a hub model (its package plus the trained weights)."""
    from .registry import Hub

    task = load(task_id)
    weights, data = _weights_of(task)
    staged = staging(task_id) / "package"
    out = paths.private_dir(staging(task_id) / "publish")
    try:
        for f in staged.iterdir():
            if f.is_file():
                shutil.copy2(f, out / f.name)
        (out / weights).write_bytes(data)
        meta = json.loads((staged / "model.json").read_text())
        for key in ("uuid", "owner", "publication_date"):
            meta.pop(key, None)
        meta.update(weights=weights, source_task=task.id, params=task.params,
                    metrics={k: task.status[k] for k in ("best_val_accuracy", "test_accuracy") if k in task.status})
        meta["name"] = name or meta["name"]
        meta["version"] = version or f"{meta['version']}+{task.id.lower()}"
        meta["description"] = f"{meta['description']} Trained by task {task.id} ({task.type})."
        (out / "model.json").write_text(json.dumps(meta, indent=1))
        return Hub.from_profile(file or task.profile).publish(out, visibility=visibility, group=group,
                                                             shared_with=shared_with)
    finally:
        shutil.rmtree(out, ignore_errors=True)
