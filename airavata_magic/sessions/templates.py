"""Templates: a recorded session with named, typed inputs, run again through papermill.

An inputs spec (YAML or TOML, CONTRACT.md)::

    inputs:
      lr: {type: float, default: 0.05, help: learning rate}
      epochs: {type: int, default: 2}
      data: {type: str}              # no default: required at run time

``add`` finds each input's first top-level assignment in the session (with ``ast``), removes it
from its cell, and puts all inputs in one cell tagged ``parameters``. An input that a remote
cell assigned is sent to that runtime (``values.push_values``) right before that cell.
"""
from __future__ import annotations

import keyword
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from .. import paths, yamlfile
from ..errors import InvalidArgument
from . import export
from .journal import SessionStore, validate_session_name

TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (float, int), "str": (str,), "bool": (bool,),
                                      "list": (list,), "dict": (dict,)}
SPEC_KEYS = ("type", "default", "help")


@dataclass
class Input:
    name: str
    type: str
    default: Any = None
    required: bool = True
    help: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "help": self.help}
        if not self.required:
            d["default"] = self.default
        return d


# -- values ----------------------------------------------------------------------------------------
def check_value(inp: Input, value: Any, where: str) -> Any:
    """A value of the declared type (ints are accepted as floats), else ``InvalidArgument``."""
    ok = isinstance(value, TYPES[inp.type]) and not (isinstance(value, bool) and inp.type in ("int", "float"))
    if not ok:
        raise InvalidArgument(f"{where}: input {inp.name!r} must be {inp.type}, got {type(value).__name__} {value!r}")
    return float(value) if inp.type == "float" else value


def parse_text(inp: Input, text: str, where: str = "-p") -> Any:
    """Parse a ``-p KEY VALUE`` string by the declared type."""
    try:
        if inp.type == "int":
            return int(text.strip(), 10)
        if inp.type == "float":
            return float(text)
        if inp.type == "bool":
            low = text.strip().lower()
            if low in ("true", "yes", "1", "on"):
                return True
            if low in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if inp.type == "str":
            return text
        value = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise InvalidArgument(f"{where} {inp.name} {text!r}: not a valid {inp.type}") from None
    return check_value(inp, value, f"{where} {inp.name}")


# -- the spec ------------------------------------------------------------------------------------
def load_spec(path: str | Path) -> dict[str, Input]:
    """Read and validate an inputs spec (.yml/.yaml or .toml). Errors name the file, line, input."""
    p = Path(path).expanduser()
    fname = str(p)
    if p.suffix.lower() not in (".yml", ".yaml", ".toml"):
        raise InvalidArgument(f"inputs spec {fname}: use a .yml, .yaml or .toml file")
    try:
        doc = yamlfile.load(p)
    except yamlfile.FileFormatError as e:
        raise InvalidArgument(f"inputs spec {e}") from None
    return parse_spec(doc, fname)


def parse_spec(doc: Any, fname: str = "<spec>") -> dict[str, Input]:
    """Validate a parsed spec document."""

    def where(d: Any, key: Any) -> str:
        line = getattr(d, "lines", {}).get(key)
        return f"inputs spec {fname}:{line}" if line else f"inputs spec {fname}"

    if not isinstance(doc, dict) or "inputs" not in doc:
        raise InvalidArgument(f"inputs spec {fname}: expected a mapping with inputs: {{NAME: {{type: ..., default: ...}}}}")
    extra = [k for k in doc if k != "inputs"]
    if extra:
        raise InvalidArgument(f"{where(doc, extra[0])}: unknown key {extra[0]!r}; only inputs: is allowed")
    inputs = doc["inputs"]
    if not isinstance(inputs, dict) or not inputs:
        raise InvalidArgument(f"{where(doc, 'inputs')}: inputs: must map at least one name to {{type: ...}}")
    out: dict[str, Input] = {}
    for name, body in inputs.items():
        w = where(inputs, name)
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise InvalidArgument(f"{w}: input name {name!r} must be a Python variable name not starting with '_'")
        if not isinstance(body, dict):
            raise InvalidArgument(f"{w}: input {name!r} must be a mapping like {{type: float, default: 0.1}}")
        for key in body:
            if key not in SPEC_KEYS:
                raise InvalidArgument(f"{where(body, key) if hasattr(body, 'lines') else w}: input {name!r}: "
                                      f"unknown key {key!r}; allowed: {', '.join(SPEC_KEYS)}")
        typ = body.get("type")
        if typ not in TYPES:
            raise InvalidArgument(f"{w}: input {name!r}: type must be one of {', '.join(TYPES)}, got {typ!r}")
        helptext = body.get("help", "")
        if not isinstance(helptext, str):
            raise InvalidArgument(f"{w}: input {name!r}: help must be text")
        inp = Input(name, typ, help=helptext.strip())
        if "default" in body:
            inp.default = check_value(inp, body["default"], w + " default")
            inp.required = False
        out[name] = inp
    return out


# -- templates -----------------------------------------------------------------------------------
class TemplateStore:
    """``$AIRAVATA_MAGIC_HOME/templates/NAME/template.ipynb`` (the spec lives in its metadata)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = paths.private_dir((root or paths.home()) / "templates")

    def dir(self, name: str) -> Path:
        return self.root / validate_session_name(name, "template")

    def path(self, name: str) -> Path:
        return self.dir(name) / "template.ipynb"

    def load(self, name: str) -> tuple[nbformat.NotebookNode, dict[str, Input]]:
        p = self.path(name)
        if not p.is_file():
            known = ", ".join(sorted(d.name for d in self.root.iterdir() if (d / "template.ipynb").is_file())) or "none yet"
            raise InvalidArgument(f"no template named {name!r} (templates: {known}); "
                                  "create one with %template add --name T --session S --inputs SPEC")
        nb = nbformat.read(p, as_version=4)
        spec = nb.metadata.get("airavata", {}).get("template", {}).get("inputs", {})
        return nb, parse_spec({"inputs": dict(spec)}, str(p))

    def table(self):
        import pandas as pd

        rows = []
        for d in sorted(self.root.iterdir()):
            p = d / "template.ipynb"
            if not p.is_file():
                continue
            try:
                meta = nbformat.read(p, as_version=4).metadata.get("airavata", {}).get("template", {})
            except Exception:  # noqa: BLE001 - list what can be read
                continue
            inputs = meta.get("inputs", {})
            rows.append({"name": d.name, "session": meta.get("session"),
                         "inputs": ", ".join(f"{k}: {v.get('type')}" + ("" if "default" in v else " (required)")
                                             for k, v in inputs.items()),
                         "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(meta.get("created", 0))),
                         "path": str(p)})
        return pd.DataFrame(rows, columns=["name", "session", "inputs", "created", "path"])


def parameters_cell(inputs: dict[str, Input]) -> str:
    lines = ["# Template inputs (papermill parameters). Set with -p NAME VALUE or --input-file."]
    for inp in inputs.values():
        note = f"{inp.type}" + ("" if not inp.required else ", required") + (f": {inp.help}" if inp.help else "")
        lines.append(f"{inp.name} = {inp.default!r}  # {note}")
    return "\n".join(lines)


def make_template(session_nb: dict[str, Any], inputs: dict[str, Input], name: str, session: str) -> nbformat.NotebookNode:
    """Lift each input's first top-level assignment into a parameters cell; build the notebook."""
    steps, skipped = export.plan(session_nb)
    where: dict[str, tuple[int, export.Step]] = {}
    out_steps: list[export.Step] = []
    for st in steps:
        found = export.top_level_assignments(st.body())
        lifted = [(n, found[n]) for n in inputs if n in found and n not in where]
        for n, (first, last, _) in lifted:
            if last < 0:
                raise InvalidArgument(f"input {n!r} is assigned in recorded cell {st.source_index + 1} on a line "
                                      "with other statements; put the assignment on its own line and record again")
        if lifted:
            body_lines = st.body().splitlines(keepends=True)
            drop = {ln for _, (first, last, _) in lifted for ln in range(first, last + 1)}
            st.set_body("".join(line for i, line in enumerate(body_lines, 1) if i not in drop).rstrip("\n"))
            if st.remote:
                names = ", ".join(f"{n}={n}" for n, _ in lifted)
                out_steps.append(export.Step("from airavata_magic.sessions.values import push_values\n"
                                             f"push_values({','.join(st.runtimes)!r}, {names})",
                                             [export.LOCAL], st.source_index, tags=[export.PUSH_TAG]))
            for n, _ in lifted:
                where[n] = (st.source_index, st)
        if st.body().strip():
            out_steps.append(st)
    missing = [n for n in inputs if n not in where]
    if missing:
        raise InvalidArgument(f"input(s) {', '.join(map(repr, missing))} are never assigned at the top level of "
                              f"session {session!r} (as `NAME = value` on its own line); fix the spec or the session")
    nb = export.build(session_nb, parameters=parameters_cell(inputs), steps=out_steps, skipped=skipped, title=session)
    nb.metadata["airavata"]["template"] = {"name": name, "session": session, "created": time.time(),
                                           "inputs": {n: i.to_json() for n, i in inputs.items()},
                                           "lifted_from": {n: where[n][0] + 1 for n in inputs}}
    return nb


def add(name: str, session: str, spec_path: str, *, sessions: SessionStore | None = None,
        store: TemplateStore | None = None) -> Path:
    """``%template add``: session + inputs spec -> a stored template notebook."""
    validate_session_name(name, "template")
    inputs = load_spec(spec_path)
    nb = (sessions or SessionStore()).read(session)
    tpl = make_template(nb, inputs, name, session)
    store = store or TemplateStore()
    path = store.path(name)
    paths.private_dir(path.parent)
    nbformat.validate(tpl)
    paths.write_private(path, nbformat.writes(tpl))
    return path


def read_values_file(path: str | Path, what: str) -> tuple[Path, Any]:
    """Read a YAML or TOML file of values (by suffix); errors name ``what`` and the file."""
    p = Path(path).expanduser()
    try:
        return p, yamlfile.load(p)
    except yamlfile.FileFormatError as e:
        raise InvalidArgument(f"{what} {e}") from None


def resolve_parameters(inputs: dict[str, Input], input_file: str | None = None,
                       pairs: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Typed, validated parameters from an input file (YAML/TOML mapping) and ``-p`` pairs
    (``-p`` wins). Unknown keys, wrong types and missing required inputs raise ``InvalidArgument``."""
    values: dict[str, Any] = {n: i.default for n, i in inputs.items() if not i.required}
    known = ", ".join(inputs)
    if input_file:
        p, doc = read_values_file(input_file, "input file")
        doc = doc or {}
        if not isinstance(doc, dict):
            raise InvalidArgument(f"input file {p}: expected a mapping of input names to values")
        for key, value in doc.items():
            if key not in inputs:
                raise InvalidArgument(f"input file {p}: unknown input {key!r}; inputs: {known}")
            values[key] = check_value(inputs[key], value, f"input file {p}")
    for key, text in pairs or []:
        if key not in inputs:
            raise InvalidArgument(f"-p {key}: unknown input {key!r}; inputs: {known}")
        values[key] = parse_text(inputs[key], text)
    missing = [n for n, i in inputs.items() if i.required and n not in values]
    if missing:
        raise InvalidArgument(f"missing required input(s) {', '.join(missing)}: give -p NAME VALUE or --input-file")
    return values


def run(name: str, *, input_file: str | None = None, pairs: list[tuple[str, str]] | None = None,
        runtime: str | None = None, output: str | None = None, store: TemplateStore | None = None,
        timeout: float | None = None, on_cell=None):
    """``%template run``: validate the parameters, then execute with papermill (child process);
    ``on_cell(done, total)`` as cells finish (see ``runner.run_notebook``)."""
    from .runner import run_notebook

    store = store or TemplateStore()
    _, inputs = store.load(name)
    params = resolve_parameters(inputs, input_file, pairs)
    if runtime is not None:
        from ..jupyter.kernelspec import resolve_preset

        resolve_preset(runtime)  # an unknown preset fails here, before anything runs
    if output is None:
        runs = paths.private_dir(store.dir(name) / "runs")
        output = str(runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.ipynb")
    elif not Path(output).expanduser().parent.is_dir():
        raise InvalidArgument(f"--output {output}: folder {Path(output).parent} does not exist")
    return run_notebook(store.path(name), Path(output).expanduser(), params, runtime=runtime, timeout=timeout,
                        on_cell=on_cell)
