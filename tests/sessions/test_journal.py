"""The on-disk journal: a valid notebook after every append, cheap appends, repair of a torn write."""
from __future__ import annotations

import json
import os
import stat

import nbformat
import pytest

from airavata_magic.errors import InvalidArgument
from airavata_magic.sessions import journal


def _cell(i: int) -> dict:
    return journal.new_code_cell(f"x = {i}\nprint(x)", [{"output_type": "stream", "name": "stdout", "text": f"{i}\n"}],
                                 i, {"runtimes": ["local"], "status": "ok", "started": 0.0, "duration": 0.001})


def test_every_append_leaves_a_valid_private_notebook(tmp_path):
    path = tmp_path / "s.ipynb"
    j = journal.JournalFile(path, journal.new_metadata("s"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
    for i in range(1, 6):
        j.append(_cell(i))
        nb = nbformat.reads(path.read_text(), as_version=4)
        nbformat.validate(nb)
        assert [c.source for c in nb.cells] == [f"x = {k}\nprint(x)" for k in range(1, i + 1)]
        assert nb.metadata["airavata"]["session"]["cells"] == i
    j.close()


def test_append_writes_only_the_new_cell(tmp_path):
    """The file grows by the new line only: earlier bytes are never rewritten by an append."""
    path = tmp_path / "s.ipynb"
    j = journal.JournalFile(path, journal.new_metadata("s"))
    for i in range(50):
        j.append(_cell(i))
    before = path.read_bytes()
    head = before[: before.rindex(b"],\n\"metadata\"")]
    j.append(_cell(50))
    after = path.read_bytes()
    assert after.startswith(head)
    j.close()


def test_replace_rewrites_an_earlier_cell(tmp_path):
    path = tmp_path / "s.ipynb"
    j = journal.JournalFile(path, journal.new_metadata("s"))
    for i in range(3):
        j.append(_cell(i))
    c = dict(j.cells[1], source="changed")
    j.replace(1, c)
    j.append(_cell(3))
    nb = nbformat.reads(path.read_text(), as_version=4)
    nbformat.validate(nb)
    assert [c.source for c in nb.cells][1] == "changed" and len(nb.cells) == 4
    j.close()


def test_torn_write_is_repaired_keeping_complete_cells(tmp_path):
    path = tmp_path / "s.ipynb"
    j = journal.JournalFile(path, journal.new_metadata("s"))
    for i in range(4):
        j.append(_cell(i))
    j.close()
    raw = path.read_bytes()
    # A write torn in the middle of the last cell's line: the tail and half a line are gone.
    cut = raw.rindex(b"\n,{") + 40
    path.write_bytes(raw[:cut])
    nb = journal.read_session(path)
    assert [c["source"] for c in nb["cells"]] == [f"x = {k}\nprint(x)" for k in range(3)]
    nbformat.validate(nbformat.from_dict(nb))
    assert json.loads(path.read_text())["metadata"]["airavata"]["session"]["repaired"] is True


def test_store_lists_from_the_tail_and_validates_names(tmp_path):
    store = journal.SessionStore(tmp_path)
    j = journal.JournalFile(store.path("alpha"), journal.new_metadata("alpha"))
    j.session["used"] = ["local", "gpu"]
    j.append(_cell(1))
    j.close()
    table = store.table()
    assert list(table["name"]) == ["alpha"] and list(table["cells"]) == [1]
    assert table["runtimes"][0] == "gpu, local"
    for bad in ("../etc", "", "a b", ".hidden", "x" * 65):
        with pytest.raises(InvalidArgument):
            store.path(bad)
    with pytest.raises(InvalidArgument, match="no session named 'missing'"):
        store.read("missing")
