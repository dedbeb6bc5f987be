"""What a person sees in JupyterLab, in a real Chromium: six scenarios asserted on the page.

One Lab server and one page for the module (fixtures in conftest.py); remote cells run on the
embedded ``local`` runtime kind (a separate kernel process, no cluster needed). Each scenario
keeps a screenshot in out/browser/.
"""
from __future__ import annotations

import re
import time

import pytest

from .lab import Lab, wait_until

# Scenarios 2-5 share one notebook and one runtime.
SETUP_LOCAL = "import os\nprint('notebook kernel pid', os.getpid())"
SETUP = "%load_ext airavata_magic\n%request_runtime rb --resource local --walltime 30\n%wait_for_runtime rb\n%switch_runtime rb"
ERROR = "def risky(x):\n    return 1 / x\n\nrisky(0)"
SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"
AFTER = "print('after the interrupt, pid', __import__('os').getpid())"
INPUT = "name = input('name? ')\nprint('hello', name)"
GETPASS = "from getpass import getpass\npw = getpass('password? ')\nprint('got', len(pw), 'characters')"
SLIDER = "import ipywidgets\nslider = ipywidgets.IntSlider(value=3, min=0, max=100, description='remote')\nslider"
READ = "print('remote sees', slider.value)"
LAB_NOTEBOOKS = {"remote.ipynb": [SETUP_LOCAL, SETUP, ERROR, SLEEP, AFTER, INPUT, GETPASS, SLIDER, READ]}


def first_line(source: str) -> str:
    return source.splitlines()[0]


def test_quickstart_run_all(lab: Lab) -> None:
    """1. Run all: every cell completes; the live wait is one output changing in place; the
    runtimes table, the update_display counter and the DataFrame render."""
    lab.open_notebook("quickstart.ipynb")
    wait_marker = "%wait_for_runtime demo --live"
    lab.watch_outputs(wait_marker)
    lab.menu("Run", "Run All Cells")
    cells = lab.cells()
    n = cells.count()
    assert n >= 10
    wait_until(lambda: all(re.fullmatch(r"\[\d+\]:", lab.prompt(cells.nth(i))) for i in range(n)), 180,
               "every quickstart cell to complete")
    assert lab.notebook.locator('[data-mime-type="application/vnd.jupyter.stderr"]').count() == 0, \
        lab.notebook.inner_text()[-3000:]

    wait_cell = lab.cell(wait_marker)
    assert lab.outputs(wait_cell).count() == 1, lab.output_text(wait_cell)
    assert "ready" in lab.output_text(wait_cell)
    states = [s for s in lab.watched() if s["n"] > 0]
    assert max(s["n"] for s in states) == 1, states  # never a growing list of lines
    assert len({s["text"] for s in states}) >= 2, states  # the one display changed in place
    lab.shot("1-quickstart-wait-display", wait_cell)

    table = lab.cell("%runtimes").locator(".jp-OutputArea-output table")
    assert table.count() == 1 and "demo" in table.inner_text()

    counter = lab.cell("from IPython.display import display, HTML")
    assert counter.locator(".jp-OutputArea-output b").all_inner_texts() == ["step 3"]
    frame = lab.cell("import pandas as pd").locator(".jp-OutputArea-output table")
    assert frame.count() == 1 and "x squared" in frame.locator("th").all_inner_texts()
    lab.shot("1-quickstart-end", lab.cells().nth(n - 1))


@pytest.fixture(scope="module")
def remote(lab: Lab) -> dict[str, str]:
    """remote.ipynb open, its runtime ``rb`` ready and current; the notebook kernel's pid."""
    lab.open_notebook("remote.ipynb")
    local_pid = re.search(r"pid (\d+)", lab.run_and_wait(lab.cell(first_line(SETUP_LOCAL)))).group(1)
    text = lab.run_and_wait(lab.cell(first_line(SETUP)), timeout=120)
    assert "cells run on 'rb'" in text, text
    return {"local_pid": local_pid}


def test_remote_error_shows_remote_traceback(lab: Lab, remote: dict[str, str]) -> None:
    """2. A remote error: the remote traceback, with the exception's name, in Lab's error style."""
    cell = lab.cell(first_line(ERROR))
    lab.run_and_wait(cell)
    errors = lab.errors(cell)
    assert errors.count() == 1
    text = errors.inner_text()
    assert "ZeroDivisionError" in text and "risky" in text and "return 1 / x" in text, text
    assert "airavata_magic" not in text and "run_cell_magic" not in text, text
    background = errors.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background not in ("", "transparent", "rgba(0, 0, 0, 0)"), background  # error style
    lab.shot("2-remote-error", cell)


def test_interrupt_button_stops_remote_sleep(lab: Lab, remote: dict[str, str]) -> None:
    """3. The toolbar's interrupt button ends a remote sleep(60) within 3 s with the remote
    KeyboardInterrupt; the next remote cell runs."""
    cell = lab.cell(first_line(SLEEP))
    lab.run(cell)
    wait_until(lambda: "sleeping" in lab.output_text(cell), 30, "the remote cell to start sleeping")
    started = time.monotonic()
    lab.notebook.locator('.jp-Toolbar-item[data-jp-item-name="interrupt"]').click()
    wait_until(lambda: "KeyboardInterrupt" in lab.output_text(cell), 10, "KeyboardInterrupt in the cell",
               every=0.05)
    lab.wait_done(cell, timeout=10)
    took = time.monotonic() - started
    assert took < 3, f"the interrupt took {took:.1f} s"
    text = lab.errors(cell).inner_text()
    assert "KeyboardInterrupt" in text and "time.sleep(60)" in text, text
    assert "airavata_magic" not in text and "run_cell_magic" not in text, text
    lab.shot("3-interrupt", cell)

    after = lab.run_and_wait(lab.cell(first_line(AFTER)))
    pid = re.search(r"after the interrupt, pid (\d+)", after)
    assert pid and pid.group(1) != remote["local_pid"], after


def test_remote_input_and_getpass(lab: Lab, remote: dict[str, str]) -> None:
    """4. A remote input() shows Lab's input box; the typed value reaches the remote kernel.
    getpass() too, and the secret never appears in the page."""
    cell = lab.cell(first_line(INPUT))
    lab.run(cell)
    box = cell.locator("input.jp-Stdin-input")
    box.wait_for(timeout=30_000)
    assert "name?" in lab.output_text(cell)
    box.fill("Ada Lovelace")
    box.press("Enter")
    lab.wait_done(cell)
    assert "hello Ada Lovelace" in lab.output_text(cell)

    secret_cell = lab.cell(first_line(GETPASS))
    lab.run(secret_cell)
    box = secret_cell.locator("input.jp-Stdin-input")
    box.wait_for(timeout=30_000)
    assert box.get_attribute("type") == "password"
    box.fill("hunter2-s3cret")
    lab.shot("4-input", secret_cell)
    box.press("Enter")
    lab.wait_done(secret_cell)
    assert "got 14 characters" in lab.output_text(secret_cell)
    assert "hunter2-s3cret" not in lab.page.content()


def test_remote_widget_slider(lab: Lab, remote: dict[str, str]) -> None:
    """5. An ipywidgets slider made on the runtime renders; dragging it changes the value the
    remote kernel sees."""
    cell = lab.cell(first_line(SLIDER))
    lab.run_and_wait(cell)
    slider = cell.locator(".widget-slider")
    slider.wait_for(timeout=30_000)
    readout = slider.locator(".widget-readout")
    assert readout.inner_text().strip() == "3"
    track = slider.locator(".noUi-target").bounding_box()
    handle = slider.locator(".noUi-handle").bounding_box()
    assert track and handle
    y = handle["y"] + handle["height"] / 2
    lab.page.mouse.move(handle["x"] + handle["width"] / 2, y)
    lab.page.mouse.down()
    lab.page.mouse.move(track["x"] + track["width"] * 0.7, y, steps=8)
    lab.page.mouse.up()
    value = wait_until(lambda: (v := readout.inner_text().strip()) != "3" and v, 10, "the readout to change")
    assert 50 <= int(value) <= 90, value
    seen = lab.run_and_wait(lab.cell(first_line(READ)))
    assert f"remote sees {value}" in seen, (value, seen)
    lab.shot("5-widget", cell)


def test_kernelspec_appears_in_launcher_and_runs_on_the_runtime(lab: Lab) -> None:
    """6. ``airavata-magic kernelspec install --runtime labrt``: the kernel is in Lab's launcher,
    and a notebook on it runs in the runtime's process, not the server's."""
    r = lab.server.cli("kernelspec", "install", "--runtime", "labrt")
    assert r.returncode == 0, r.stderr
    lab.open(reset=True)  # a fresh load reads the kernelspecs again
    card = lab.page.locator(".jp-LauncherCard", has_text="Python on labrt (airavata)").first
    card.wait_for(timeout=30_000)
    lab.shot("6-launcher", card)
    card.click()
    lab.notebook.locator(".jp-Cell").first.wait_for(timeout=30_000)
    lab.wait_kernel_idle(timeout=120)
    editor = lab.notebook.locator(".jp-Cell .cm-content").first
    editor.click()
    lab.page.keyboard.type("import os; os.getpid()")
    lab.page.keyboard.press("Shift+Enter")
    cell = lab.cells().first
    lab.wait_done(cell, timeout=60)
    pid = lab.output_text(cell).strip()
    assert pid.isdigit(), pid
    assert int(pid) != lab.server.proc.pid
    table = lab.server.cli("runtimes")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines() if "local" in line.split()]
    assert any(pid in row for row in rows), (pid, table.stdout)  # a local runtime's job id is its pid
    lab.shot("6-kernelspec-notebook", cell)
