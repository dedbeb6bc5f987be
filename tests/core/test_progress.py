"""Progress in place: one display updated in a notebook, a tqdm bar on a terminal's stderr."""
from __future__ import annotations

import io

from airavata_magic.progress import Progress, human


def test_in_a_notebook_progress_is_one_display_updated_in_place(notebook):
    cell = notebook.run(
        "from airavata_magic.progress import Progress\n"
        "with Progress('copy x', total=4096, unit='B', notebook=True) as p:\n"
        "    for _ in range(4):\n"
        "        p.advance(1024)\n"
        "        import time; time.sleep(0.25)\n")
    assert cell.status == "ok", cell.text
    shown = cell.of_type("display_data")
    updates = cell.of_type("update_display_data")
    assert len(shown) == 1, "one display, not a growing list of lines"
    display_id = shown[0]["transient"]["display_id"]
    assert updates and {u["transient"]["display_id"] for u in updates} == {display_id}
    final = updates[-1]["data"]
    assert "4.0 KiB of 4.0 KiB (100%)" in final["text/plain"]
    assert "<progress" in final["text/html"]


def test_on_a_terminal_progress_is_a_bar_on_the_stream():
    err = io.StringIO()
    with Progress("files", total=3, unit="file", notebook=False, stream=err) as p:
        for _ in range(3):
            p.advance(1)
        p.set(3, note="verified")
    out = err.getvalue()
    assert "files" in out and "3/3" in out and "verified" in out


def test_human_sizes():
    assert human(1536, "B") == "1.5 KiB"
    assert human(3 * 1024**3, "B") == "3.0 GiB"
    assert human(12, "file") == "12 file"
