"""A recorded session -> a notebook that ``papermill`` re-runs unchanged.

The exported notebook:

1. (templates only) one cell tagged ``parameters`` with the lifted inputs;
2. loads the extension, re-requests every runtime the session used with the resources it was
   recorded with (resource, cpus, memory, gpus, walltime, partition, ...) and waits for them;
3. asks again for any secret the session needed (``values.secret``: environment or prompt);
4. replays each recorded cell where it ran: local cells as they were, remote cells as
   ``%%run_on NAME[,NAME]``; the runtime magics that steered the original session
   (``%request_runtime``, ``%switch_runtime`` ...) are left out because step 2 and the explicit
   routing replace them;
5. stops the runtimes it requested.

Cells that failed when recorded are left out (a replay would stop there), and a markdown note says so.
"""
from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import nbformat

from ..errors import InvalidArgument
from ..runtime import LOCAL
from .redact import CODE_MARK_RE

# Runtime magics whose effect the export header and explicit routing reproduce.
STEERING_MAGICS = {"request_runtime", "wait_for_runtime", "switch_runtime", "stop_runtime", "attach_runtime",
                   "authenticate", "runtimes", "stat_runtime", "interrupt_runtime"}
_LINE_MAGIC_RE = re.compile(r"^\s*%(?!%)([A-Za-z_]\w*)(.*)$")
SETUP_TAG, TEARDOWN_TAG, PUSH_TAG = "airavata-setup", "airavata-teardown", "airavata-push"
WAIT_TIMEOUT = 900
# Sessions not recorded from notebook cells export through their own builder (kind -> "module:function").
OTHER_KINDS = {"script": "airavata_magic.api.session:build_notebook", "shell": "airavata_magic.shell.export:build"}


@dataclass
class Step:
    """One cell of the exported notebook, before it becomes nbformat."""

    code: str
    runtimes: list[str]  # ['local'] or remote names
    source_index: int | None = None  # the recorded cell it came from
    outputs: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def remote(self) -> bool:
        return self.runtimes != [LOCAL]

    def body(self) -> str:
        """The Python that runs (for remote cells: without the ``%%run_on`` line)."""
        if self.code.lstrip().startswith("%%run_on"):
            return self.code.split("\n", 1)[1] if "\n" in self.code else ""
        return self.code

    def set_body(self, body: str) -> None:
        if self.code.lstrip().startswith("%%run_on"):
            self.code = self.code.split("\n", 1)[0] + "\n" + body
        else:
            self.code = body


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def plan(nb: dict[str, Any]) -> tuple[list[Step], list[int]]:
    """Recorded cells -> routed steps; also the (1-based) numbers of failed cells left out."""
    steps: list[Step] = []
    skipped: list[int] = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {}).get("airavata", {})
        if meta.get("status") == "error":
            skipped.append(i + 1)
            continue
        runtimes = list(meta.get("runtimes") or [LOCAL])
        code = _source(cell)
        outputs = [dict(o) for o in cell.get("outputs", [])]
        if code.lstrip().startswith("%%run_on"):
            steps.append(Step(code, runtimes, i, outputs))
            continue
        lines = code.splitlines(keepends=True)
        k, kept = 0, []
        while k < len(lines):
            s = lines[k].strip()
            m = _LINE_MAGIC_RE.match(lines[k])
            if not s or s.startswith("#"):
                k += 1
            elif m and (m.group(1) in STEERING_MAGICS or (m.group(1) == "load_ext" and "airavata_magic" in m.group(2))):
                k += 1
            elif m and m.group(1) == "restart_runtime":
                kept.append(lines[k])
                k += 1
            else:
                break
        rest = "".join(lines[k:])
        if kept:
            steps.append(Step("".join(kept).rstrip("\n"), [LOCAL], i))
        if not rest.strip():
            continue
        if runtimes == [LOCAL]:
            steps.append(Step(rest.rstrip("\n"), runtimes, i, outputs))
        else:
            steps.append(Step(f"%%run_on {','.join(runtimes)}\n{rest.rstrip(chr(10))}", runtimes, i, outputs))
    return steps, skipped


def request_line(name: str, record: dict[str, Any]) -> str:
    """``%request_runtime`` for a recorded runtime, with every recorded resource setting."""
    spec = record.get("spec") or {}
    args = [name, "--resource", record.get("resource") or LOCAL]
    profile = record.get("profile")
    if profile:
        import os

        if os.path.isfile(profile):
            args += ["--file", profile]
    for key in ("cpus", "gpus", "walltime", "partition", "account", "image", "node"):
        if spec.get(key) is not None:
            args += [f"--{key}", str(spec[key])]
    if spec.get("memory") is not None:
        args += ["--memory", f"{spec['memory']}M"]
    return "%request_runtime " + " ".join(shlex.quote(a) for a in args)


def _code_cell(code: str, tags: list[str] | None = None, outputs: list | None = None, meta: dict | None = None):
    cell = nbformat.v4.new_code_cell(code)
    if tags:
        cell.metadata["tags"] = list(tags)
    if meta:
        cell.metadata["airavata"] = meta
    if outputs:
        cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def build(nb: dict[str, Any], *, parameters: str | None = None, steps: list[Step] | None = None,
          skipped: list[int] | None = None, title: str | None = None) -> nbformat.NotebookNode:
    """The exported notebook for a recorded session (``parameters``: a templates' parameters cell)."""
    kind = nb.get("metadata", {}).get("airavata", {}).get("session", {}).get("kind", "notebook")
    if kind in OTHER_KINDS and parameters is None and steps is None:
        import importlib

        module, _, func = OTHER_KINDS[kind].partition(":")
        return getattr(importlib.import_module(module), func)(nb)
    if steps is None:
        steps, skipped = plan(nb)
    session = nb.get("metadata", {}).get("airavata", {}).get("session", {})
    name = title or session.get("name", "session")
    records: dict[str, dict[str, Any]] = session.get("runtimes", {})
    used: list[str] = []
    for st in steps:
        for r in st.runtimes:
            if r != LOCAL and r not in used:
                used.append(r)
    missing = [r for r in used if r not in records]
    if missing:
        raise InvalidArgument(f"session {name!r} ran cells on {', '.join(missing)} but has no record of how "
                              "they were requested; it cannot be exported")

    out = nbformat.v4.new_notebook()
    out.metadata.update({k: v for k, v in nb.get("metadata", {}).items() if k in ("kernelspec", "language_info")})
    out.metadata["airavata"] = {"exported_from": name, "runtimes": {r: records[r] for r in used}}
    note = f"Replay of session `{name}` recorded with airavata-magic."
    if skipped:
        note += f" Left out: cell(s) {', '.join(map(str, skipped))}, which failed when recorded."
    out.cells.append(nbformat.v4.new_markdown_cell(note))
    if parameters is not None:
        out.cells.append(_code_cell(parameters, ["parameters"]))

    setup = ["%load_ext airavata_magic"]
    for r in used:
        preset = records[r].get("preset")
        if preset:
            setup.append(f"# {r}: preset {preset!r}, re-requested with the resources it was recorded with")
        setup.append(request_line(r, records[r]))
    for r in used:
        setup.append(f"%wait_for_runtime {shlex.quote(r)} --timeout {WAIT_TIMEOUT}")
    out.cells.append(_code_cell("\n".join(setup), [SETUP_TAG]))

    for st in steps:
        _getpass_to_marker(st)
    secret_names = sorted({m.group("name") for st in steps for m in CODE_MARK_RE.finditer(st.code)})
    if secret_names:
        lines = ["from airavata_magic.sessions.values import secret",
                 "# each secret is read from $AIRAVATA_SECRET_<NAME>, else asked for",
                 "_airavata_secrets = {"]
        lines += [f"    {n!r}: secret({n!r})," for n in secret_names]
        lines.append("}")
        out.cells.append(_code_cell("\n".join(lines), [SETUP_TAG]))
    pushed: set[str] = set()
    for st in steps:
        needs = CODE_MARK_RE.search(st.code) is not None
        if needs:
            st.code = CODE_MARK_RE.sub(lambda m: f"_airavata_secrets[{m.group('name')!r}]", st.code)
            if st.remote:
                targets = ",".join(st.runtimes)
                if targets not in pushed:
                    pushed.add(targets)
                    out.cells.append(_code_cell(
                        "from airavata_magic.sessions.values import push_values\n"
                        f"push_values({targets!r}, _airavata_secrets=_airavata_secrets)", [PUSH_TAG]))
        meta = {"runtimes": st.runtimes, "recorded_cell": None if st.source_index is None else st.source_index + 1}
        out.cells.append(_code_cell(st.code, st.tags, st.outputs, meta))
    if used:
        out.cells.append(_code_cell("\n".join(f"%stop_runtime {shlex.quote(r)}" for r in used), [TEARDOWN_TAG]))
    return out


def write(nb: nbformat.NotebookNode, path: str) -> None:
    """Validate and write a notebook (plain file; the user chose where)."""
    import os

    nbformat.validate(nb)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InvalidArgument(f"cannot write {path}: folder {folder} does not exist")
    try:
        nbformat.write(nb, path)
    except OSError as e:
        raise InvalidArgument(f"cannot write {path}: {e.strerror}") from None


def top_level_assignments(code: str) -> dict[str, tuple[int, int, str]]:
    """``name -> (first line, last line, value source)`` (1-based, inclusive) of a cell's
    top-level single-name assignments, found with ``ast`` on the IPython-transformed source.
    Only the first assignment of each name counts."""
    from IPython.core.inputtransformer2 import TransformerManager

    if code.lstrip().startswith("%%"):
        return {}  # a cell magic's body is not Python run here
    try:
        py = TransformerManager().transform_cell(code)  # line magics become calls on the same line
        tree = ast.parse(py)
    except (SyntaxError, ValueError):
        return {}
    found: dict[str, tuple[int, int, str]] = {}
    lines = py.splitlines()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            target = node.target.id
        else:
            continue
        if target in found:
            continue
        shared = any(o is not node and o.lineno <= node.end_lineno and o.end_lineno >= node.lineno
                     for o in tree.body)
        after = lines[node.end_lineno - 1][node.end_col_offset:].strip(" \t;")
        if shared or node.col_offset != 0 or (after and not after.startswith("#")):
            found[target] = (node.lineno, -1, "")  # shares its line with another statement
            continue
        found[target] = (node.lineno, node.end_lineno, ast.get_source_segment(py, node.value) or "")
    return found


def _getpass_to_marker(step: Step) -> None:
    """``pw = getpass(...)`` at the top level -> ``pw = '<redacted:pw>'``, so that a replay reads
    the secret from the environment or asks for it (papermill has no stdin for getpass)."""
    body = step.body()
    found = top_level_assignments(body)
    lines = body.splitlines(keepends=True)
    changed = False
    for name, (first, last, value) in sorted(found.items(), key=lambda kv: -kv[1][0]):
        if last < 0 or not value:
            continue
        try:
            call = ast.parse(value, mode="eval").body
        except SyntaxError:
            continue
        f = getattr(call, "func", None)
        if not (isinstance(call, ast.Call) and ((isinstance(f, ast.Name) and f.id == "getpass")
                                                or (isinstance(f, ast.Attribute) and f.attr == "getpass"))):
            continue
        lines[first - 1:last] = [f"{name} = {f'<redacted:{name}>'!r}\n"]
        changed = True
    if changed:
        step.set_body("".join(lines).rstrip("\n"))
