"""Progress of long session work in a terminal: the CLI's replay, template run and sweep draw one
bar on stderr (progress.Progress), and a replay in a notebook kernel is one display updated in
place."""
from __future__ import annotations

import re

from airavata_magic import cli

from .test_template_runs import _write_session

CELLS = ["x = 1", "import time\ntime.sleep(0.5)\ny = x + 1", "time.sleep(0.5)\nprint('y is', y)"]


def _counts(stderr: str, label: str) -> list[tuple[int, int]]:
    """(done, total) of every redraw of the bar named ``label`` (tqdm's ``| 2/3 [``)."""
    draws = [re.search(r"\| *(\d+)/(\d+) \[", d) for d in re.split(r"[\r\n]", stderr) if d.startswith(label)]
    return [(int(m.group(1)), int(m.group(2))) for m in draws if m]  # no total yet: no "n/total"


def test_cli_replay_and_sweep_draw_progress_on_stderr(tmp_path, magic_home, monkeypatch, capsys):
    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(magic_home))
    monkeypatch.delenv("AIRAVATA_MAGIC_PROFILE", raising=False)
    _write_session(magic_home, "s", CELLS)
    assert cli.main(["session", "replay", "s", "-o", str(tmp_path / "replayed.ipynb")]) == 0
    out, err = capsys.readouterr()
    assert "replayed session 's'" in out
    counts = _counts(err, "replay s")
    total = counts[-1][1]
    assert counts[-1] == (total, total) and total >= len(CELLS), err
    assert any(0 < done < total for done, _ in counts), err  # drawn while the cells ran, not only at the end

    (tmp_path / "spec.yml").write_text("inputs:\n  x: {type: int, default: 1}\n")
    assert cli.main(["template", "add", "--name", "t", "--session", "s", "--inputs", str(tmp_path / "spec.yml")]) == 0
    capsys.readouterr()
    assert cli.main(["template", "run", "t", "-p", "x", "5", "-o", str(tmp_path / "run.ipynb")]) == 0
    counts = _counts(capsys.readouterr().err, "template t")
    assert counts and counts[-1][0] == counts[-1][1] >= len(CELLS), counts

    (tmp_path / "grid.yml").write_text("grid:\n  x: [1, 2, 3]\n")
    assert cli.main(["template", "sweep", "t", "--grid", str(tmp_path / "grid.yml"), "--parallel", "2",
                     "--output-dir", str(tmp_path / "sweep")]) == 0
    out, err = capsys.readouterr()
    counts = _counts(err, "sweep t")
    assert counts[0] == (0, 3) and counts[-1] == (3, 3), err
    assert "run 1" not in out  # per-run lines no longer interleave with the bar; the table follows
    assert len([line for line in out.splitlines() if " ok " in f" {line} "]) == 3, out


def test_session_load_in_a_notebook_is_one_display(notebook_factory, magic_home):
    _write_session(magic_home, "s", CELLS)
    cell = notebook_factory().ok("%session load s")
    shown = cell.of_type("display_data")
    assert len(shown) == 1 and shown[0]["data"]["text/plain"].startswith("replay session s: 0 cells of 3 cells")
    did = shown[0]["transient"]["display_id"]
    updates = cell.of_type("update_display_data")
    assert updates and all(u["transient"]["display_id"] == did for u in updates)
    assert updates[-1]["data"]["text/plain"].startswith("replay session s: 3 cells of 3 cells (100%)")
    assert "y is 2" in cell.stdout and "replayed 3 cells" in cell.stdout
