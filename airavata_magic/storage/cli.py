"""Command line: ``storage list|ls|register|remove|mount``, ``copy SRC DST``,
``dataset register|list|show|remove|load``. ``register(subparsers)`` is called by the CLI."""
from __future__ import annotations

import argparse
import json


def _table(table, empty: str) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 80):
        print(table.to_string(index=False) if len(table) else empty)


def _storage(args: argparse.Namespace) -> int:
    from . import api

    if args.action == "list":
        _table(api.list_locations(args.file), "no storage locations")
    elif args.action == "ls":
        _table(api.ls(args.target, args.file), "empty")
    elif args.action == "register":
        loc = api.register(args.name, args.location, args.file)
        print(f"storage {loc.name!r} registered ({loc.kind}: {loc.location})")
    elif args.action == "remove":
        api.remove(args.name, args.file)
        print(f"storage {args.name!r} removed")
    elif args.action == "mount":
        print(api.mount(args.name, args.runtime, args.as_path, file=args.file))
    return 0


def _copy(args: argparse.Namespace) -> int:
    from .copying import copy

    print(copy(args.src, args.dst, recursive=args.recursive, verify=args.verify, jobs=args.jobs, file=args.file))
    return 0


def _dataset(args: argparse.Namespace) -> int:
    from . import datasets

    if args.action == "register":
        ds = datasets.register(args.name, args.location, after_download=args.after_download, sha256=args.sha256,
                               public=args.public, description=args.description, title=args.title,
                               domain=args.domain, version=args.version, file=args.file)
        print(f"dataset {ds.name!r} registered ({'public' if ds.public else 'private'})")
    elif args.action == "list":
        _table(datasets.list_datasets(args.file), "no datasets")
    elif args.action == "show":
        print(json.dumps(datasets.show(args.name, args.file), indent=1))
    elif args.action == "remove":
        datasets.remove(args.name, args.file)
        print(f"dataset {args.name!r} removed")
    elif args.action == "load":
        print(datasets.load(args.name, args.runtime, args.as_var, file=args.file, progress=None))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``storage``, ``copy`` and ``dataset`` to the ``airavata-magic`` command."""
    p = sub.add_parser("storage", help="named storage locations")
    ss = p.add_subparsers(dest="action", metavar="ACTION")
    ss.required = True
    q = ss.add_parser("list", help="every named location")
    q = ss.add_parser("ls", help="list NAME[:SUBPATH]")
    q.add_argument("target", metavar="NAME[:SUBPATH]")
    q = ss.add_parser("register", help="add a location to your list")
    q.add_argument("--name", required=True)
    q.add_argument("--location", required=True)
    q = ss.add_parser("remove", help="remove a location from your list")
    q.add_argument("name")
    q = ss.add_parser("mount", help="link a location into a runtime's working directory")
    q.add_argument("name")
    q.add_argument("--runtime", required=True)
    q.add_argument("--as", dest="as_path")
    for q in ss.choices.values():
        q.add_argument("--file", help="the profile (cybershuttle.yml)")
    p.set_defaults(func=_storage)

    p = sub.add_parser("copy", help="copy files (as %%copy_data): local:PATH, STORAGE:PATH, RUNTIME:PATH")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--recursive", "-r", action="store_true")
    p.add_argument("--verify", action="store_true", help="compare sha256 of both sides")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--file", help="the profile (cybershuttle.yml)")
    p.set_defaults(func=_copy)

    p = sub.add_parser("dataset", help="datasets: register, list, show, remove, load")
    ds = p.add_subparsers(dest="action", metavar="ACTION")
    ds.required = True
    q = ds.add_parser("register", help="register a dataset")
    q.add_argument("--name", required=True)
    q.add_argument("--location", required=True, help="STORAGE:PATH or an http(s) URL")
    q.add_argument("--after-download")
    q.add_argument("--sha256")
    vis = q.add_mutually_exclusive_group()
    vis.add_argument("--public", action="store_true")
    vis.add_argument("--private", action="store_true")
    q.add_argument("--description", default="")
    q.add_argument("--title", default="")
    q.add_argument("--domain", default="")
    q.add_argument("--version", default="1.0")
    ds.add_parser("list", help="datasets you may see")
    for verb in ("show", "remove"):
        ds.add_parser(verb).add_argument("name")
    q = ds.add_parser("load", help="place a dataset on a runtime's resource")
    q.add_argument("name")
    q.add_argument("--runtime", required=True)
    q.add_argument("--as", dest="as_var")
    for q in ds.choices.values():
        q.add_argument("--file", help="the profile (cybershuttle.yml)")
    p.set_defaults(func=_dataset)
