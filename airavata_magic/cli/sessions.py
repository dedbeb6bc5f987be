"""``airavata-magic session list|show|replay|export``, ``template list|add|run|sweep`` and
``kernelspec install``."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from ..errors import InvalidArgument
from ..shell.cli import add_session_commands
from . import positive_int_arg, seconds_arg


def _print_table(table, empty: str) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 80):
        print(table.to_string(index=False) if len(table) else empty)


def _session_list(args: argparse.Namespace) -> int:
    from ..sessions.journal import SessionStore

    _print_table(SessionStore().table(), "no sessions")
    return 0


def _session_show(args: argparse.Namespace) -> int:
    from ..sessions.journal import SessionStore, cells_table

    _print_table(cells_table(SessionStore().read(args.name)), "no cells")
    return 0


def _session_export(args: argparse.Namespace) -> int:
    from ..sessions import export
    from ..sessions.journal import SessionStore

    if not args.path.endswith(".ipynb"):
        raise InvalidArgument(f"export to a .ipynb path, not {args.path!r}")
    export.write(export.build(SessionStore().read(args.name)), args.path)
    print(f"exported session {args.name!r} to {args.path}")
    return 0


def _session_replay(args: argparse.Namespace) -> int:
    from ..sessions import export
    from ..sessions.journal import SessionStore
    from ..sessions.runner import run_notebook

    from ..progress import Progress

    nb = export.build(SessionStore().read(args.name))
    out = args.output or f"{args.name}-replay.ipynb"
    with tempfile.TemporaryDirectory(prefix="airavata-replay-") as tmp:
        src = os.path.join(tmp, f"{args.name}.ipynb")
        export.write(nb, src)
        with Progress(f"replay {args.name}", total=len(nb["cells"]), unit="cells") as bar:
            r = run_notebook(src, out, timeout=args.timeout, on_cell=lambda done, total: bar.set(done, total=total))
    if r.status == "ok":
        print(f"replayed session {args.name!r} in {r.duration:.1f} s: {out}")
        return 0
    print(f"replay of session {args.name!r} failed: {r.error}; output: {out}", file=sys.stderr)
    return 1


def _pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    return [tuple(p) for p in (args.parameter or [])]


def _template_list(args: argparse.Namespace) -> int:
    from ..sessions.templates import TemplateStore

    _print_table(TemplateStore().table(), "no templates")
    return 0


def _template_add(args: argparse.Namespace) -> int:
    from ..sessions import templates

    path = templates.add(args.name, args.session, args.inputs)
    print(f"template {args.name!r} created from session {args.session!r}: {path}")
    return 0


def _template_run(args: argparse.Namespace) -> int:
    from ..progress import Progress
    from ..sessions import templates

    with Progress(f"template {args.name}", unit="cells") as bar:
        r = templates.run(args.name, input_file=args.input_file, pairs=_pairs(args), runtime=args.runtime,
                          output=args.output, timeout=args.timeout,
                          on_cell=lambda done, total: bar.set(done, total=total))
    for k, v in r.values.items():
        print(f"{k} = {v!r}")
    if r.status == "ok":
        print(f"template {args.name!r} ran in {r.duration:.1f} s: {r.output}")
        return 0
    print(f"template {args.name!r} failed: {r.error}; output: {r.output}", file=sys.stderr)
    return 1


def _template_sweep(args: argparse.Namespace) -> int:
    from ..sessions.sweep import sweep

    # runs done are shown on stderr as they finish (progress.Progress); the table follows
    table = sweep(args.name, args.grid, runtime=args.runtime, parallel=args.parallel, output_dir=args.output_dir,
                  input_file=args.input_file, pairs=_pairs(args), timeout=args.timeout)
    _print_table(table.drop(columns=["output"]), "no runs")
    print(f"table: {table.attrs['csv']}")
    return 0 if (table["status"] == "ok").all() else 1


def _kernelspec_install(args: argparse.Namespace) -> int:
    from ..jupyter.kernelspec import install

    prefix = args.prefix or (sys.prefix if args.sys_prefix else None)
    where = install(args.runtime, profile=args.file, user=prefix is None, prefix=prefix)
    name = os.path.basename(where)
    print(f"installed kernelspec {name} in {where}; run a notebook there with: papermill -k {name} in.ipynb out.ipynb")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``session``, ``template`` and ``kernelspec`` commands."""
    s = subparsers.add_parser("session", help="recorded sessions").add_subparsers(dest="session_cmd", required=True)
    p = s.add_parser("list", help="all recorded sessions")
    p.set_defaults(func=_session_list)
    p = s.add_parser("show", help="the cells of one session")
    p.add_argument("name")
    p.set_defaults(func=_session_show)
    add_session_commands(s)  # start | stop | load: shell sessions (airavata_magic/shell)
    p = s.add_parser("export", help="write a notebook that papermill re-runs unchanged")
    p.add_argument("name")
    p.add_argument("path", help="the notebook to write (.ipynb)")
    p.set_defaults(func=_session_export)
    p = s.add_parser("replay", help="export and run a session with papermill")
    p.add_argument("name")
    p.add_argument("-o", "--output", help="the executed notebook (default: NAME-replay.ipynb)")
    p.add_argument("--timeout", type=seconds_arg, help="give up after this many seconds")
    p.set_defaults(func=_session_replay)

    t = subparsers.add_parser("template", help="templates made from sessions").add_subparsers(dest="template_cmd",
                                                                                             required=True)
    p = t.add_parser("list", help="all templates")
    p.set_defaults(func=_template_list)
    p = t.add_parser("add", help="turn a recorded session into a template")
    p.add_argument("--name", required=True, help="the template's name")
    p.add_argument("--session", required=True, help="the recorded session")
    p.add_argument("--inputs", required=True, help="inputs spec (.yml, .yaml or .toml)")
    p.set_defaults(func=_template_add)
    for cmd in ("run", "sweep"):
        p = t.add_parser(cmd, help="run a template once" if cmd == "run" else "run a template over a grid")
        p.add_argument("name")
        p.add_argument("--input-file", help="input values (YAML or TOML mapping)")
        p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                       help="one input value (repeatable)")
        p.add_argument("--runtime", help="run on a fresh runtime from this preset")
        p.add_argument("--timeout", type=seconds_arg, help="seconds per run")
        if cmd == "run":
            p.add_argument("-o", "--output", help="where to write the executed notebook")
            p.set_defaults(func=_template_run)
        else:
            p.add_argument("--grid", required=True, help="grid file: {grid: {INPUT: [values...]}}")
            p.add_argument("--parallel", type=positive_int_arg, default=2, help="runs at once (default 2)")
            p.add_argument("--output-dir", help="folder for the run notebooks and sweep.csv")
            p.set_defaults(func=_template_sweep)

    k = subparsers.add_parser("kernelspec", help="Jupyter kernels on runtime presets").add_subparsers(
        dest="kernelspec_cmd", required=True)
    p = k.add_parser("install", help="install kernelspec airavata-PRESET")
    p.add_argument("--runtime", required=True, help="the runtime preset")
    p.add_argument("--file", help="the profile defining the preset")
    p.add_argument("--sys-prefix", action="store_true", help="install into this Python environment, not per user")
    p.add_argument("--prefix", help="install under PREFIX/share/jupyter/kernels (then add it to JUPYTER_PATH)")
    p.set_defaults(func=_kernelspec_install)


__all__ = ["register"]
