"""Inputs specs (YAML and TOML), lifting inputs with ast, typed parameters, export planning."""
from __future__ import annotations

import nbformat
import pytest

from airavata_magic.errors import InvalidArgument
from airavata_magic.sessions import export, journal, templates

SPEC_YAML = """inputs:
  lr: {type: float, default: 0.05, help: learning rate}
  epochs: {type: int, default: 2}
  data: {type: str}
"""
SPEC_TOML = """[inputs.lr]
type = "float"
default = 0.05
help = "learning rate"
[inputs.epochs]
type = "int"
default = 2
[inputs.data]
type = "str"
"""


def session_nb(cells: list[tuple[str, list[str]]], runtimes: dict | None = None, status: dict | None = None) -> dict:
    meta = journal.new_metadata("s")
    meta["airavata"]["session"]["runtimes"] = runtimes or {}
    return {"cells": [journal.new_code_cell(src, [], i, {"runtimes": rts, "status": (status or {}).get(i, "ok")})
                      for i, (src, rts) in enumerate(cells)],
            "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.parametrize("suffix,text", [(".yml", SPEC_YAML), (".toml", SPEC_TOML)])
def test_spec_yaml_and_toml_agree(tmp_path, suffix, text):
    p = tmp_path / f"spec{suffix}"
    p.write_text(text)
    spec = templates.load_spec(p)
    assert list(spec) == ["lr", "epochs", "data"]
    assert spec["lr"].default == 0.05 and spec["lr"].type == "float" and spec["lr"].help == "learning rate"
    assert spec["epochs"].default == 2 and not spec["epochs"].required
    assert spec["data"].required


@pytest.mark.parametrize("text,message", [
    ("inputs:\n  lr: {type: float, default: fast}\n", r"spec\.yml:2.*'lr' must be float, got str"),
    ("inputs:\n  lr: {type: float, dflt: 1}\n", r"unknown key 'dflt'; allowed: type, default, help"),
    ("inputs:\n  lr: {type: decimal}\n", r"type must be one of int, float, str, bool, list, dict"),
    ("inputs:\n  n: {type: int, default: true}\n", r"'n' must be int, got bool"),
    ("inputs:\n  class: {type: int}\n", r"must be a Python variable name"),
    ("inputs:\n  lr: {type: float}\nextra: 1\n", r"spec\.yml:3: unknown key 'extra'"),
    ("inputs: [1, 2]\n", r"inputs: must map at least one name"),
    ("inputs:\n  lr: {type: float\n", r"not valid YAML"),
    ("inputs:\n  lr: 0.1\n", r"'lr' must be a mapping"),
])
def test_bad_specs_name_file_line_and_problem(tmp_path, text, message):
    p = tmp_path / "spec.yml"
    p.write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        templates.load_spec(p)


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "spec.toml"
    p.write_text("[inputs.lr\ntype='float'")
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        templates.load_spec(p)
    with pytest.raises(InvalidArgument, match="file not found"):
        templates.load_spec(tmp_path / "nope.yml")
    with pytest.raises(InvalidArgument, match="use a .yml, .yaml or .toml"):
        templates.load_spec(tmp_path / "spec.json")


def _inputs(tmp_path):
    p = tmp_path / "spec.yml"
    p.write_text(SPEC_YAML)
    return templates.load_spec(p)


def test_parameters_are_typed_validated_and_required(tmp_path):
    inputs = _inputs(tmp_path)
    assert templates.resolve_parameters(inputs, pairs=[("data", "x.csv"), ("epochs", "5"), ("lr", "1e-3")]) == \
        {"lr": 0.001, "epochs": 5, "data": "x.csv"}
    with pytest.raises(InvalidArgument, match=r"-p epochs 'two': not a valid int"):
        templates.resolve_parameters(inputs, pairs=[("data", "x"), ("epochs", "two")])
    with pytest.raises(InvalidArgument, match=r"unknown input 'batch'; inputs: lr, epochs, data"):
        templates.resolve_parameters(inputs, pairs=[("batch", "3")])
    with pytest.raises(InvalidArgument, match=r"missing required input\(s\) data"):
        templates.resolve_parameters(inputs, pairs=[("lr", "0.1")])
    infile = tmp_path / "in.yml"
    infile.write_text("data: d.csv\nepochs: 3.5\n")
    with pytest.raises(InvalidArgument, match=r"input 'epochs' must be int, got float"):
        templates.resolve_parameters(inputs, str(infile))
    infile.write_text("data: d.csv\nepochs: 3\n")
    assert templates.resolve_parameters(inputs, str(infile), [("epochs", "4")]) == {"lr": 0.05, "epochs": 4, "data": "d.csv"}
    infile.write_text("dta: d.csv\n")
    with pytest.raises(InvalidArgument, match=r"unknown input 'dta'"):
        templates.resolve_parameters(inputs, str(infile))


def test_inputs_are_lifted_with_ast_into_one_parameters_cell(tmp_path):
    inputs = _inputs(tmp_path)
    nb = session_nb([
        ("import math\nlr = 0.1  # tuned\nprint('lr =', lr)", ["local"]),
        ("%%run_on gpu\nepochs = 3\ndata = (\n    'a.csv'\n)\nprint(epochs, data)", ["gpu"]),
        ("def f():\n    lr = 99\n    return lr\nlr = 5", ["local"]),  # not the first top-level one: kept
    ], runtimes={"gpu": {"resource": "hpc", "kind": "slurm", "spec": {"gpus": 1}}})
    tpl = templates.make_template(nb, inputs, "t", "s")
    nbformat.validate(tpl)
    params = [c for c in tpl.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    assert "lr = 0.05" in params[0].source and "epochs = 2" in params[0].source and "data = None" in params[0].source
    codes = [c.source for c in tpl.cells if c.cell_type == "code"]
    body = "\n".join(codes)
    assert "lr = 0.1" not in body and "epochs = 3" not in body and "'a.csv'" not in body
    assert "print('lr =', lr)" in body and "lr = 5" in body and "    lr = 99" in body
    # the remote cell's inputs are sent to its runtime right before it
    i = next(k for k, c in enumerate(codes) if c.startswith("%%run_on gpu"))
    assert codes[i - 1].endswith("push_values('gpu', epochs=epochs, data=data)")
    assert tpl.metadata["airavata"]["template"]["lifted_from"] == {"lr": 1, "epochs": 2, "data": 2}


def test_an_input_the_session_never_assigns_is_an_error(tmp_path):
    inputs = _inputs(tmp_path)
    nb = session_nb([("lr = 0.1\nif True:\n    epochs = 1\n", ["local"])])
    with pytest.raises(InvalidArgument, match=r"'epochs', 'data' are never assigned at the top level"):
        templates.make_template(nb, inputs, "t", "s")


def test_an_input_sharing_its_line_is_an_error(tmp_path):
    inputs = _inputs(tmp_path)
    nb = session_nb([("lr = 0.1; epochs = 1\ndata = 'x'", ["local"])])
    with pytest.raises(InvalidArgument, match="on a line with other statements"):
        templates.make_template(nb, inputs, "t", "s")


def test_export_plan_routes_cells_where_they_ran():
    nb = session_nb([
        ("%load_ext airavata_magic", ["local"]),
        ("%request_runtime gpu --resource hpc\n%wait_for_runtime gpu", ["local"]),
        ("%switch_runtime gpu\nimport torch\ntorch.cuda.is_available()", ["gpu"]),
        ("%%run_on gpu,cpu\nprint(1)", ["gpu", "cpu"]),
        ("1/0", ["local"]),
        ("%switch_runtime local\nx = 1", ["local"]),
        ("%restart_runtime gpu\nprint(2)", ["gpu"]),
    ], runtimes={"gpu": {"resource": "hpc", "kind": "slurm", "preset": "gpu",
                         "spec": {"gpus": 1, "memory": 8192, "partition": "gpu q", "walltime": 30}},
                 "cpu": {"resource": "local", "kind": "local", "spec": {}}}, status={4: "error"})
    steps, skipped = export.plan(nb)
    assert skipped == [5]
    assert [(s.code, s.runtimes) for s in steps] == [
        ("%%run_on gpu\nimport torch\ntorch.cuda.is_available()", ["gpu"]),
        ("%%run_on gpu,cpu\nprint(1)", ["gpu", "cpu"]),
        ("x = 1", ["local"]),
        ("%restart_runtime gpu", ["local"]),
        ("%%run_on gpu\nprint(2)", ["gpu"]),
    ]
    out = export.build(nb)
    nbformat.validate(out)
    setup = out.cells[1].source
    assert "%request_runtime gpu --resource hpc --gpus 1 --walltime 30 --partition 'gpu q' --memory 8192M" in setup
    assert "%request_runtime cpu --resource local" in setup and "%wait_for_runtime cpu --timeout" in setup
    assert out.cells[-1].source == "%stop_runtime gpu\n%stop_runtime cpu"
    assert "cell(s) 5, which failed" in out.cells[0].source


def test_export_turns_redacted_secrets_into_lookups():
    nb = session_nb([("password = '<redacted:password>'\nlogin(password)", ["local"]),
                     ("%%run_on gpu\ntoken = '<redacted:token>'", ["gpu"])],
                    runtimes={"gpu": {"resource": "local", "kind": "local", "spec": {}}})
    out = export.build(nb)
    codes = [c.source for c in out.cells if c.cell_type == "code"]
    assert any("'password': secret('password')" in c and "'token': secret('token')" in c for c in codes)
    assert "password = _airavata_secrets['password']\nlogin(password)" in codes
    i = codes.index("%%run_on gpu\ntoken = _airavata_secrets['token']")
    assert codes[i - 1].endswith("push_values('gpu', _airavata_secrets=_airavata_secrets)")
