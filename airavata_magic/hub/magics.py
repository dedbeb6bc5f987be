"""``%model`` and ``%task``: thin magics over the hub's API (``registry``, ``inference``, ``tasks``).

``load(ip, manager)`` is called by ``airavata_magic.load_ipython_extension``. Listings come back as
the cell's value (``df = %task list``); long work updates one display in place.
"""
from __future__ import annotations

import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..usage import parse as _parse
from ..usage import user_errors as _user_errors

_MODEL_ACTIONS = ("list", "show", "publish", "run", "load", "remove")
_TASK_ACTIONS = ("new", "list", "show", "cancel", "publish")


def _visibility(a: Any) -> tuple[str | None, str | None, list[str] | None]:
    chosen = [v for v, on in (("public", a.public), ("private", a.private)) if on]
    users = [u.strip() for u in a.share_with.split(",") if u.strip()] if a.share_with else None
    if a.group:
        chosen.append("shared")
    if users:
        chosen.append("shared")
    if len(chosen) > 1:
        raise UsageError("choose one of --public, --private, --group GROUP, --share-with USERS")
    return (chosen[0] if chosen else None), a.group, users


def _need(a: Any, what: str, usage: str) -> str:
    if not a.target:
        raise UsageError(f"{what} needs {usage}")
    return a.target


def metrics_figure(task: Any, table: Any):
    """A loss/accuracy plot of a task's epochs (a matplotlib Figure)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    fig = Figure(figsize=(8, 3))
    loss, acc = fig.subplots(1, 2)
    loss.plot(table["epoch"], table["train_loss"], marker="o", label="train")
    loss.plot(table["epoch"], table["val_loss"], marker="o", label="validation")
    loss.set(xlabel="epoch", ylabel="cross-entropy loss", title=f"{task.id} loss")
    loss.legend()
    acc.plot(table["epoch"], table["val_accuracy"], marker="o", color="tab:green")
    acc.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.02), title=f"{task.name} ({task.state})")
    fig.tight_layout()
    return fig


@magics_class
class HubMagics(Magics):
    """The model hub and training tasks."""

    def __init__(self, shell: Any, manager: Any) -> None:
        super().__init__(shell)
        self.manager = manager

    @magic_arguments()
    @argument("action", choices=_MODEL_ACTIONS, help="what to do")
    @argument("target", nargs="?", help="show/run/load/remove: a model (NAME[:VERSION], OWNER/NAME, uuid); publish: DIR")
    @argument("--name", help="list: filter by name (substring); publish: override the package's name")
    @argument("--owner", help="list: filter by owner")
    @argument("--domain", help="list: filter by domain (substring)")
    @argument("--version", help="list: filter by version; publish: override the package's version")
    @argument("--latest", action="store_true", help="list: only the latest version of each model")
    @argument("--datasets", action="store_true",
              help="list: datasets (registered or in the hub) instead of models (same columns)")
    @argument("--mode", choices=("inference", "modify"), help="run: inference; load: modify")
    @argument("--input-folder", help="run: folder of .npy inputs (on the runtime's side)")
    @argument("--output", help="run: folder for predictions.csv and Results.json")
    @argument("--runtime", help="run/load: a runtime (default: this notebook's kernel)")
    @argument("--batch-size", type=int, default=32, help="run: inputs per batch (default 32)")
    @argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when there is a GPU")
    @argument("--as", dest="var", default="model", help="load: variable name (default: model)")
    @argument("--public", action="store_true", help="publish: visible to every user")
    @argument("--private", action="store_true", help="publish: visible to you only (default)")
    @argument("--group", help="publish: shared with this Unix group")
    @argument("--share-with", help="publish: shared with these users (comma-separated; POSIX ACLs)")
    @argument("--file", help="profile file (the hub is its hub: {storage: NAME})")
    @line_magic
    @_user_errors
    def model(self, line: str):
        """The model hub: list, show, publish DIR, run NAME --mode inference, load NAME --mode modify."""
        a = _parse(self.model, line)
        from . import inference
        from .registry import Hub

        if a.action == "list":
            return Hub.from_profile(a.file).search("dataset" if a.datasets else "model", name=a.name, owner=a.owner,
                                                   domain=a.domain, version=a.version, only_latest=a.latest)
        if a.action == "show":
            import pandas as pd

            kind = "dataset" if a.datasets else "model"
            entry = Hub.from_profile(a.file).get(_need(a, "%model show", "NAME"), kind)
            return pd.DataFrame({"value": [str(v) for v in entry.values()]}, index=list(entry))
        if a.action == "publish":
            vis, group, users = _visibility(a)
            meta = {k: v for k, v in (("name", a.name), ("version", a.version)) if v}
            e = Hub.from_profile(a.file).publish(_need(a, "%model publish", "DIR (a package folder)"), meta,
                                                 visibility=vis, group=group, shared_with=users)
            print(f"published {e['type']} {e['owner']}/{e['name']} {e['version']} ({e['visibility']}) uuid {e['uuid']}")
            return None
        if a.action == "remove":
            print(Hub.from_profile(a.file).remove(_need(a, "%model remove", "NAME")))
            return None
        if a.action == "run":
            if a.mode not in (None, "inference"):
                raise UsageError("%model run is inference (--mode inference); %model load NAME --mode modify loads it")
            if not a.input_folder:
                raise UsageError("%model run needs --input-folder DIR (a folder of .npy inputs)")
            df = inference.run(_need(a, "%model run", "NAME"), a.input_folder, a.output, runtime=a.runtime,
                               batch_size=a.batch_size, device=a.device, file=a.file)
            r = df.attrs["results"]
            print(f"{r.get('num_samples', len(df))} inputs in {r['num_batches']} batches on {r['device']}: "
                  f"{r['sample_persec']} samples/s")
            return df
        if a.mode != "modify":
            raise UsageError("%model load takes --mode modify (the whole model in memory)")
        print(inference.load_modify(_need(a, "%model load", "NAME"), runtime=a.runtime, var=a.var, device=a.device,
                                    file=a.file, namespace=self.shell.user_ns))
        return None

    @magic_arguments()
    @argument("action", choices=_TASK_ACTIONS, help="what to do")
    @argument("task_id", nargs="?", help="show/cancel/publish: the task id (TASK...)")
    @argument("--name", help="new: the task's name; publish: the model's name")
    @argument("--type", choices=("train", "finetune"), help="new: train, or finetune from --trained-task-id")
    @argument("--model", help="new: hub model or package folder")
    @argument("--train-data", help="new: .npz (X, y) or a dataset name (registered or in the hub)")
    @argument("--val-data", help="new: .npz (X, y) or a dataset name (registered or in the hub)")
    @argument("--test-data", help="new: .npz (X, y) or a dataset name (registered or in the hub)")
    @argument("--params", help="new: YAML file of training parameters")
    @argument("-p", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[], help="new: one parameter")
    @argument("--trained-task-id", help="new: the finished task whose weights a finetune starts from")
    @argument("--runtime", help="new: a runtime or preset; the task is a batch job on its resource")
    @argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    @argument("--follow", action="store_true", help="show: update in place until the task ends")
    @argument("--timeout", type=float, default=3600, help="show --follow: give up after this many seconds")
    @argument("--version", help="publish: the model's version")
    @argument("--public", action="store_true", help="publish: visible to every user")
    @argument("--private", action="store_true", help="publish: visible to you only (default)")
    @argument("--group", help="publish: shared with this Unix group")
    @argument("--share-with", help="publish: shared with these users (comma-separated; POSIX ACLs)")
    @argument("--file", help="profile file")
    @line_magic
    @_user_errors
    def task(self, line: str):
        """Training tasks: new, list, show ID [--follow], cancel ID, publish ID."""
        a = _parse(self.task, line)
        from . import resolve, tasks

        if a.action == "list":
            return tasks.list_tasks()
        if a.action == "new":
            missing = [f for f, v in (("--name", a.name), ("--type", a.type), ("--model", a.model),
                                      ("--train-data", a.train_data), ("--val-data", a.val_data),
                                      ("--runtime", a.runtime)) if not v]
            if missing:
                raise UsageError(f"%task new needs {', '.join(missing)}")
            params = resolve.read_params_file(a.params) if a.params else {}
            params.update({k: v for k, v in a.p})
            t = tasks.new(a.name, a.type, a.model, a.train_data, a.val_data, runtime=a.runtime, test_data=a.test_data,
                          params=params, trained_task_id=a.trained_task_id, device=a.device, file=a.file)
            print(f"{t.id} {t.state}: {t.kind} job {t.job_id} on {t.resource} (%task show {t.id} --follow)")
            return t.id
        task_id = a.task_id
        if not task_id:
            raise UsageError(f"%task {a.action} needs a task id (%task list shows them)")
        if a.action == "cancel":
            print(tasks.cancel(task_id))
            return None
        if a.action == "publish":
            vis, group, users = _visibility(a)
            e = tasks.publish(task_id, name=a.name, version=a.version, visibility=vis or "private", group=group,
                              shared_with=users, file=a.file)
            print(f"published model {e['owner']}/{e['name']} {e['version']} ({e['visibility']}) from {task_id}")
            return None
        return self._show(task_id, a.follow, a.timeout)

    def _show(self, task_id: str, follow: bool, timeout: float):
        import pandas as pd
        from IPython.display import display

        from . import tasks

        def bundle(task: Any, table: Any) -> dict[str, str]:
            head = (f"{task.id} {task.name} ({task.type} of {task.model}) on {task.runtime}: {task.state}"
                    + (f" - {task.reason}" if task.reason else ""))
            tail = table.tail(5)
            return {"text/plain": head + "\n" + tail.to_string(index=False),
                    "text/html": f"<b>{head}</b>" + tail.to_html(index=False)}

        if follow:
            handle = display(bundle(*tasks.show(task_id)), raw=True, display_id=True)
            task = tasks.wait(task_id, timeout=timeout, on_update=lambda t, m: handle.update(bundle(t, m), raw=True))
        task, table = tasks.show(task_id)
        info = {"state": task.state, "reason": task.reason, "type": task.type, "model": task.model,
                "runtime": task.runtime, "job id": task.job_id, "task folder": task.task_dir,
                **{f"params.{k}": v for k, v in task.params.items()},
                **{f"data.{k}": v for k, v in task.data.items() if v and v != "None"},
                **{k: task.status[k] for k in ("best_val_accuracy", "test_accuracy", "error") if k in task.status}}
        display(pd.DataFrame({"value": [str(v) for v in info.values()]}, index=list(info)))
        if task.state == "FAILED":
            print("--- job log tail ---\n" + tasks.log_tail(task), file=sys.stderr)
        if len(table):
            import io

            from IPython.display import Image

            png = io.BytesIO()
            metrics_figure(task, table).savefig(png, format="png", dpi=90)
            display(Image(png.getvalue()))
        return table


def load(ip: Any, manager: Any) -> None:
    """Register ``%model`` and ``%task`` on an IPython shell."""
    ip.register_magics(HubMagics(ip, manager))
