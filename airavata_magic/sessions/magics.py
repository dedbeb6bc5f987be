"""``%session`` and ``%template``: thin magics over the recorder, export and templates.

``load(ip, manager)`` is called by ``airavata_magic.load_ipython_extension``: it registers the
magics and the recorder's ``pre_run_cell``/``post_run_cell`` event hooks.
"""
from __future__ import annotations

import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..routing import CellRouting
from ..usage import parse as _parse
from ..usage import user_errors as _user_errors
from .recorder import Recorder

# export, templates and nbformat are imported when a magic needs them: loading the extension
# stays cheap for notebooks that never record.

_SESSION_ARITY = {"start": (1, 1), "stop": (0, 0), "list": (0, 0), "show": (1, 1), "load": (1, 1), "export": (2, 2)}


@magics_class
class SessionMagics(Magics):
    """Record sessions, replay and export them; turn them into templates and run those."""

    def __init__(self, shell: Any, manager: Any, recorder: Recorder) -> None:
        super().__init__(shell)
        self.manager = manager
        self.recorder = recorder

    @magic_arguments()
    @argument("action", choices=list(_SESSION_ARITY), help="what to do")
    @argument("args", nargs="*", help="start NAME | show NAME | load NAME | export NAME PATH.ipynb")
    @argument("--append", action="store_true", help="start: continue an existing session")
    @line_magic
    @_user_errors
    def session(self, line: str):
        """Record every executed cell (local or remote) into a session; list, show, replay, export."""
        a = _parse(self.session, line)
        lo, hi = _SESSION_ARITY[a.action]
        if not lo <= len(a.args) <= hi:
            usage = {"start": "NAME", "show": "NAME", "load": "NAME", "export": "NAME PATH.ipynb"}.get(a.action, "")
            raise UsageError(f"%session {a.action} takes {usage or 'no arguments'}")
        if a.append and a.action != "start":
            raise UsageError("--append goes with %session start")
        from . import export
        from .journal import cells_table

        store = self.recorder.store
        if a.action == "start":
            print(self.recorder.start(a.args[0], append=a.append))
        elif a.action == "stop":
            print(self.recorder.stop())
        elif a.action == "list":
            return store.table()
        elif a.action == "show":
            return cells_table(store.read(a.args[0]))
        elif a.action == "export":
            name, path = a.args
            if not path.endswith(".ipynb"):
                raise UsageError(f"export to a .ipynb path, not {path!r}")
            nb = export.build(store.read(name))
            export.write(nb, path)
            print(f"exported session {name!r} to {path}; run it with: papermill {path} out.ipynb")
        elif a.action == "load":
            self._load(a.args[0], store)
        return None

    def _load(self, name: str, store) -> None:
        from ..progress import Progress
        from .redact import CODE_MARK_RE
        from .values import secret

        nb = store.read(name)
        cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
        secrets: dict[str, str] = {}
        ran = 0
        # One display above the replayed cells' own outputs, updated as each cell is done.
        with Progress(f"replay session {name}", total=len(cells), unit="cells") as bar:
            for i, cell in enumerate(cells, 1):
                meta = cell.get("metadata", {}).get("airavata", {})
                code = cell.get("source", "")
                code = code if isinstance(code, str) else "".join(code)
                if meta.get("status") == "error":
                    print(f"[session {name}] cell {i}: skipped (it failed when recorded)", file=sys.stderr)
                    bar.set(i)
                    continue
                for m in CODE_MARK_RE.finditer(code):
                    if m.group("name") not in secrets:
                        secrets[m.group("name")] = secret(m.group("name"))
                code = CODE_MARK_RE.sub(lambda m: repr(secrets[m.group("name")]), code)
                result = self.shell.run_cell(code, store_history=False)
                ran += 1
                bar.set(i)
                if not result.success:
                    raise UsageError(f"replay of session {name!r} stopped at cell {i} (it failed now; see above)")
        print(f"replayed {ran} cells of session {name!r}")

    @magic_arguments()
    @argument("action", choices=["add", "run", "list"], help="what to do")
    @argument("--name", help="the template's name")
    @argument("--session", help="add: the recorded session to turn into a template")
    @argument("--inputs", help="add: the inputs spec (.yml, .yaml or .toml)")
    @argument("--input-file", help="run: input values (YAML or TOML mapping)")
    @argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[],
              help="run: one input value, parsed by its declared type (repeatable)")
    @argument("--runtime", help="run: run the whole notebook on a fresh runtime from this preset")
    @argument("--output", help="run: where to write the executed notebook")
    @line_magic
    @_user_errors
    def template(self, line: str):
        """Templates: a session with typed inputs lifted into a ``parameters`` cell, run by papermill."""
        from . import templates

        a = _parse(self.template, line)
        allowed = {"add": {"name", "session", "inputs"}, "run": {"name", "input_file", "parameter", "runtime", "output"},
                   "list": set()}[a.action]
        given = {k for k in ("name", "session", "inputs", "input_file", "parameter", "runtime", "output")
                 if getattr(a, k)}
        extra = given - allowed
        if extra:
            flag = sorted(extra)[0].replace("_", "-")
            raise UsageError(f"--{'p' if flag == 'parameter' else flag} does not apply to %template {a.action}")
        if a.action == "list":
            return templates.TemplateStore().table()
        if not a.name:
            raise UsageError(f"%template {a.action} needs --name T")
        if a.action == "add":
            if not a.session or not a.inputs:
                raise UsageError("%template add needs --name T --session S --inputs SPEC.(yml|toml)")
            path = templates.add(a.name, a.session, a.inputs)
            print(f"template {a.name!r} created from session {a.session!r}: {path}")
            return None
        from ..progress import Progress

        with Progress(f"template {a.name}", unit="cells") as bar:
            result = templates.run(a.name, input_file=a.input_file, pairs=[tuple(p) for p in a.parameter],
                                   runtime=a.runtime, output=a.output,
                                   on_cell=lambda done, total: bar.set(done, total=total))
        if result.status == "ok":
            values = "".join(f"\n  {k} = {v!r}" for k, v in result.values.items())
            print(f"template {a.name!r} ran in {result.duration:.1f} s; output: {result.output}{values}")
            return None
        raise UsageError(f"template {a.name!r} failed ({result.error}); output: {result.output}")


def load(ip: Any, manager: Any, routing: CellRouting | None = None) -> None:
    """Register ``%session``/``%template`` and the recorder's event hooks on ``ip``."""
    recorder = Recorder(ip, manager, routing=routing)
    ip.register_magics(SessionMagics(ip, manager, recorder))
    ip.events.register("pre_run_cell", recorder.pre_run_cell)
    ip.events.register("post_run_cell", recorder.post_run_cell)
