"""Templates end to end: %template add/run/list in a notebook, sweeps through the CLI (papermill)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from airavata_magic import cli
from airavata_magic.sessions import journal

from .conftest import read_nb

SPEC = """inputs:
  lr: {type: float, default: 0.05, help: learning rate}
  epochs: {type: int, default: 2}
  data: {type: str}
"""


def test_template_from_a_recorded_session(notebook, tmp_path, magic_home):
    nb = notebook
    (tmp_path / "spec.yml").write_text(SPEC)
    nb.ok("%session start train")
    nb.ok("lr = 0.1\nepochs = 1\ndata = 'train.csv'")
    nb.ok("loss = round(1 / (lr * epochs), 4)\nprint(data, loss)")
    nb.ok("from airavata_magic import record_value\nrecord_value('loss', loss)")
    nb.ok("%session stop")
    nb.ok(f"%template add --name tr --session train --inputs {tmp_path}/spec.yml")
    listing = nb.ok("%template list").text
    assert "tr" in listing and "lr: float" in listing and "data: str (required)" in listing

    out = tmp_path / "run.ipynb"
    cell = nb.ok(f"%template run --name tr -p data other.csv -p epochs 4 --output {out}")
    assert f"output: {out}" in cell.stdout and "loss = 5.0" in cell.stdout
    text = json.dumps(read_nb(out))
    assert "other.csv 5.0" in text  # lr default 0.05, epochs 4

    (tmp_path / "in.yml").write_text("data: from-file.csv\nlr: 0.5\n")
    cell = nb.ok(f"%template run --name tr --input-file {tmp_path}/in.yml --output {tmp_path}/run2.ipynb")
    assert "loss = 1.0" in cell.stdout

    for line, message in [
        ("%template run --name tr -p epochs two -p data x", "-p epochs 'two': not a valid int"),
        ("%template run --name tr -p batch 3 -p data x", "unknown input 'batch'"),
        ("%template run --name tr", "missing required input(s) data"),
        ("%template run --name nope -p data x", "no template named 'nope'"),
        ("%template add --name t2 --session train", "%template add needs"),
        ("%template list --session x", "--session does not apply to %template list"),
        (f"%template add --name t3 --session train --inputs {tmp_path}/missing.yml", "file not found"),
        ("%template run --name tr -p data x --output /nonexistent/dir/o.ipynb", "does not exist"),
    ]:
        c = nb.run(line)
        assert c.status == "error" and "UsageError" in c.stderr and message in c.stderr, (line, c.stderr)
        assert "Traceback" not in c.text

    (tmp_path / "bad.yml").write_text("inputs:\n  lr: {type: float}\n  missing_one: {type: int}\n")
    c = nb.run(f"%template add --name t4 --session train --inputs {tmp_path}/bad.yml")
    assert c.status == "error" and "input(s) 'missing_one' are never assigned at the top level" in c.stderr


def _write_session(home: Path, name: str, cells: list[str], runtimes: dict | None = None) -> None:
    """A recorded session as the recorder writes it (``%%run_on W`` cells ran on W)."""
    store = journal.SessionStore(home)
    meta = journal.new_metadata(name)
    meta["airavata"]["session"]["runtimes"] = runtimes or {}
    j = journal.JournalFile(store.path(name), meta)
    for i, src in enumerate(cells, 1):
        where = src.split("\n", 1)[0].split()[1].split(",") if src.startswith("%%run_on") else ["local"]
        j.append(journal.new_code_cell(src, [], i, {"runtimes": where, "status": "ok"}))
    j.close()


def test_sweep_six_combinations_two_in_parallel_one_fails(tmp_path, magic_home, monkeypatch, capsys):
    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(magic_home))
    monkeypatch.delenv("AIRAVATA_MAGIC_PROFILE", raising=False)
    _write_session(magic_home, "fit", [
        "import time\nstarted = time.time()\nlr = 0.1\nepochs = 1",
        "if lr > 0.5 and epochs == 2:\n    raise ValueError(f'diverged at lr={lr}')",
        "%%run_on w\nimport os\nworker_pid = os.getpid()\nworker_pid",
        "time.sleep(1.0)\nfrom airavata_magic import record_value\nrecord_value('loss', round(1 / (lr * epochs), 3))\n"
        "record_value('window', [started, time.time()])\nrecord_value('worker', _)",
    ], runtimes={"w": {"resource": "local", "kind": "local", "spec": {"walltime": 5}}})
    (tmp_path / "spec.toml").write_text('[inputs.lr]\ntype = "float"\ndefault = 0.1\n[inputs.epochs]\ntype = "int"\n')
    assert cli.main(["template", "list"]) == 0
    assert cli.main(["template", "add", "--name", "fit", "--session", "fit", "--inputs", str(tmp_path / "spec.toml")]) == 0
    (tmp_path / "grid.yml").write_text("grid:\n  lr: [0.1, 0.25, 1.0]\n  epochs: [1, 2]\n")
    rc = cli.main(["template", "sweep", "fit", "--grid", str(tmp_path / "grid.yml"), "--parallel", "2",
                   "--output-dir", str(tmp_path / "sweep")])
    assert rc == 1  # one run failed
    printed = capsys.readouterr().out
    assert "diverged at lr=1.0" in printed
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "sweep.csv")))
    assert len(rows) == 6
    assert [(float(r["lr"]), int(r["epochs"])) for r in rows] == [(lr, e) for lr in (0.1, 0.25, 1.0) for e in (1, 2)]
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) == 1 and float(failed[0]["lr"]) == 1.0 and int(failed[0]["epochs"]) == 2
    assert "ValueError: diverged at lr=1.0" in failed[0]["error"] and failed[0]["error"].startswith("cell ")
    for r in rows:
        if r["status"] == "ok":
            assert float(r["loss"]) == round(1 / (float(r["lr"]) * int(r["epochs"])), 3)
            assert r["error"] == ""
            assert Path(r["output"]).is_file()
    # Each run requested its own runtime 'w' (private homes: no name clash while two run at once),
    # and nothing is left running afterwards.
    workers = [int(float(r["worker"])) for r in rows if r["status"] == "ok"]
    assert len(set(workers)) == 5
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    # Two at a time: some runs overlapped, never three at once.
    windows = [json.loads(r["window"]) for r in rows if r["status"] == "ok"]
    events = sorted([(w[0], 1) for w in windows] + [(w[1], -1) for w in windows])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 2


def test_sweep_rejects_bad_grids_before_running(tmp_path, magic_home, monkeypatch):
    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(magic_home))
    _write_session(magic_home, "g", ["lr = 0.1"])
    (tmp_path / "spec.yml").write_text("inputs:\n  lr: {type: float}\n")
    from airavata_magic.errors import InvalidArgument
    from airavata_magic.sessions import sweep, templates

    templates.add("g", "g", str(tmp_path / "spec.yml"))
    for text, message in [("grid:\n  lr: [0.1, fast]\n", "'lr' must be float, got str"),
                          ("grid:\n  rate: [1]\n", "unknown input 'rate'"),
                          ("grid:\n  lr: []\n", "has no values"),
                          ("- 1\n", "expected grid:")]:
        (tmp_path / "grid.yml").write_text(text)
        with pytest.raises(InvalidArgument, match=message):
            sweep.sweep("g", str(tmp_path / "grid.yml"), output_dir=str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
    with pytest.raises(InvalidArgument, match="--parallel 0"):
        sweep.sweep("g", str(tmp_path / "grid.yml"), parallel=0)


def test_a_run_that_times_out_is_ended_with_its_kernel(tmp_path, magic_home, monkeypatch):
    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(magic_home))
    pidfile = tmp_path / "kernel.pid"
    _write_session(magic_home, "slow", ["n = 1", f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
                                               "time.sleep(120)"])
    (tmp_path / "spec.yml").write_text("inputs:\n  n: {type: int, default: 1}\n")
    from airavata_magic.sessions import templates

    templates.add("slow", "slow", str(tmp_path / "spec.yml"))
    import time

    t0 = time.monotonic()
    r = templates.run("slow", output=str(tmp_path / "o.ipynb"), timeout=8)
    assert r.status == "failed" and "timed out after 8 s" in r.error
    assert time.monotonic() - t0 < 40
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the papermill kernel outlived its run"
        time.sleep(0.2)
