"""``airavata-magic model ...`` and ``airavata-magic task ...``: the hub from a terminal.

Thin over the same API as ``%model``/``%task``; tables print as text, progress goes to stderr.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidArgument


def _print_table(df: Any, empty: str) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        print(df.to_string(index=False) if len(df) else empty)


def _visibility(args: argparse.Namespace) -> tuple[str | None, str | None, list[str] | None]:
    chosen = [v for v, on in (("public", args.public), ("private", args.private)) if on]
    users = [u.strip() for u in args.share_with.split(",") if u.strip()] if args.share_with else None
    if args.group:
        chosen.append("shared")
    if users:
        chosen.append("shared")
    if len(chosen) > 1:
        raise InvalidArgument("choose one of --public, --private, --group GROUP, --share-with USERS")
    return (chosen[0] if chosen else None), args.group, users


def _model(args: argparse.Namespace) -> int:
    from . import inference
    from .registry import Hub

    if args.model_command == "list":
        kind = "dataset" if args.datasets else "model"
        _print_table(Hub.from_profile(args.file).search(kind, name=args.name, owner=args.owner, domain=args.domain,
                                                        version=args.version, only_latest=args.latest),
                     f"no {kind}s visible")
    elif args.model_command == "show":
        entry = Hub.from_profile(args.file).get(args.ref, "dataset" if args.datasets else "model")
        for key, value in entry.items():
            print(f"{key:>17}: {value}")
    elif args.model_command == "publish":
        vis, group, users = _visibility(args)
        meta = {k: v for k, v in (("name", args.name), ("version", args.version)) if v}
        e = Hub.from_profile(args.file).publish(args.dir, meta, visibility=vis, group=group,
                                                shared_with=users)
        print(f"published {e['type']} {e['owner']}/{e['name']} {e['version']} ({e['visibility']}) uuid {e['uuid']}")
    elif args.model_command == "remove":
        print(Hub.from_profile(args.file).remove(args.ref))
    elif args.model_command == "run":
        df = inference.run(args.ref, args.input_folder, args.output, runtime=args.runtime,
                           batch_size=args.batch_size, device=args.device, file=args.file)
        r = df.attrs["results"]
        print(f"{r.get('num_samples', len(df))} inputs, {r['num_batches']} batches on {r['device']}: "
              f"{r['sample_persec']} samples/s", file=sys.stderr)
        _print_table(df[["input", "prediction"]], "no predictions")
    elif args.model_command == "load":
        print(inference.load_modify(args.ref, runtime=args.runtime, var=args.var, device=args.device, file=args.file))
    return 0


def _task(args: argparse.Namespace) -> int:
    from . import resolve, tasks

    if args.task_command == "list":
        _print_table(tasks.list_tasks(), "no tasks")
        return 0
    if args.task_command == "new":
        params = resolve.read_params_file(args.params) if args.params else {}
        params.update({k: v for k, v in args.p})
        t = tasks.new(args.name, args.type, args.model, args.train_data, args.val_data, runtime=args.runtime,
                      test_data=args.test_data, params=params, trained_task_id=args.trained_task_id,
                      device=args.device, file=args.file)
        print(t.id)
        print(f"{t.state}: {t.kind} job {t.job_id} on {t.resource}", file=sys.stderr)
        return 0
    if args.task_command == "cancel":
        print(tasks.cancel(args.id))
        return 0
    if args.task_command == "publish":
        vis, group, users = _visibility(args)
        e = tasks.publish(args.id, name=args.model_name, version=args.version, visibility=vis or "private",
                          group=group, shared_with=users, file=args.file)
        print(f"published model {e['owner']}/{e['name']} {e['version']} ({e['visibility']})")
        return 0
    if args.follow:
        printed = [0]

        def on_update(task: Any, table: Any) -> None:
            for row in table.iloc[printed[0]:].itertuples(index=False):
                print(f"epoch {row.epoch}: train_loss {row.train_loss:.4f} val_loss {row.val_loss:.4f} "
                      f"val_accuracy {row.val_accuracy:.4f}", file=sys.stderr)
            printed[0] = len(table)

        task = tasks.wait(args.id, timeout=args.timeout, on_update=on_update)
    task, table = tasks.show(args.id)
    print(f"{task.id} {task.name}: {task.state}" + (f" ({task.reason})" if task.reason else ""))
    for k, v in task.params.items():
        print(f"  params.{k} = {v}")
    _print_table(table, "no epochs yet")
    if task.state == "FAILED":
        print("--- job log tail ---\n" + tasks.log_tail(task), file=sys.stderr)
    return 0 if task.state != "FAILED" else 1


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", help="profile file (default: $AIRAVATA_MAGIC_PROFILE, ./cybershuttle.yml, user config)")


def _visibility_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--public", action="store_true", help="visible to every user")
    p.add_argument("--private", action="store_true", help="visible to you only (default)")
    p.add_argument("--group", help="shared with this Unix group")
    p.add_argument("--share-with", help="shared with these users (comma-separated; POSIX ACLs)")


def register(subparsers: Any) -> None:
    """Add ``model`` and ``task`` to the ``airavata-magic`` command line."""
    model = subparsers.add_parser("model", help="the model hub: list, show, publish, run, load, remove")
    sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND")
    sub.required = True
    p = sub.add_parser("list", help="models (or --datasets) you can see")
    for flag in ("name", "owner", "domain", "version"):
        p.add_argument(f"--{flag}")
    p.add_argument("--latest", action="store_true")
    p.add_argument("--datasets", action="store_true")
    _common(p)
    p = sub.add_parser("show", help="one entry's metadata")
    p.add_argument("ref")
    p.add_argument("--datasets", action="store_true")
    _common(p)
    p = sub.add_parser("publish", help="publish a package folder")
    p.add_argument("dir")
    p.add_argument("--name")
    p.add_argument("--version")
    _visibility_flags(p)
    _common(p)
    p = sub.add_parser("remove", help="remove one of your entries")
    p.add_argument("ref")
    _common(p)
    p = sub.add_parser("run", help="inference over a folder of .npy inputs")
    p.add_argument("ref")
    p.add_argument("--mode", choices=["inference"], default="inference")
    p.add_argument("--input-folder", required=True)
    p.add_argument("--output")
    p.add_argument("--runtime")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    _common(p)
    p = sub.add_parser("load", help="load a model into a runtime's kernel (modify mode)")
    p.add_argument("ref")
    p.add_argument("--mode", choices=["modify"], default="modify")
    p.add_argument("--runtime", required=True)
    p.add_argument("--as", dest="var", default="model")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    _common(p)
    model.set_defaults(func=_model)

    task = subparsers.add_parser("task", help="training tasks: new, list, show, cancel, publish")
    sub = task.add_subparsers(dest="task_command", metavar="SUBCOMMAND")
    sub.required = True
    p = sub.add_parser("new", help="submit a training task (prints its id)")
    p.add_argument("--name", required=True)
    p.add_argument("--type", choices=["train", "finetune"], required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--train-data", required=True)
    p.add_argument("--val-data", required=True)
    p.add_argument("--test-data")
    p.add_argument("--params")
    p.add_argument("-p", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[])
    p.add_argument("--trained-task-id")
    p.add_argument("--runtime", required=True)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    _common(p)
    sub.add_parser("list", help="your tasks")
    p = sub.add_parser("show", help="one task's params and metrics")
    p.add_argument("id")
    p.add_argument("--follow", action="store_true", help="print epochs as they finish, until the task ends")
    p.add_argument("--timeout", type=float, default=3600)
    p = sub.add_parser("cancel", help="cancel a task's job")
    p.add_argument("id")
    p = sub.add_parser("publish", help="publish a finished task's weights as a hub model")
    p.add_argument("id")
    p.add_argument("--name", dest="model_name")
    p.add_argument("--version")
    _visibility_flags(p)
    _common(p)
    task.set_defaults(func=_task)
