"""What a Jupyter frontend sees of a relayed cell: widget metadata, frontend comm traffic during a
remote cell, and an interrupted remote cell (real notebook kernel, real runtime kernel)."""
from __future__ import annotations

import queue
import re
import time
from typing import Any

import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def remote(notebook):
    notebook.ok("%request_runtime w --resource local")
    notebook.ok("%wait_for_runtime w --timeout 60")
    notebook.ok("%switch_runtime w")
    return notebook


def _widget_ids(cell) -> list[str]:
    views = [o for o in cell.of_type("display_data") if "application/vnd.jupyter.widget-view+json" in o["data"]]
    return [v["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for v in views]


def test_relayed_comm_open_carries_the_widget_protocol_version(remote):
    """JupyterLab refuses a widget whose comm_open metadata lacks the protocol version."""
    cell = remote.ok("import ipywidgets\nslider = ipywidgets.IntSlider(value=3)\ndisplay(slider)")
    (model_id,) = _widget_ids(cell)
    opens = {m["content"]["comm_id"]: m for m in cell.messages if m["msg_type"] == "comm_open"}
    version = opens[model_id]["metadata"].get("version", "")
    assert re.fullmatch(r"2\.\d+\.\d+", version), opens[model_id]["metadata"]
    assert opens[model_id]["content"]["target_name"] == "jupyter.widget"


def _create_subshell(kc) -> str:
    """A kernel subshell, as JupyterLab 4.4+ creates one (frontend traffic then runs in its own
    thread of the notebook kernel)."""
    msg = kc.session.msg("create_subshell_request", {})
    kc.control_channel.send(msg)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = kc.control_channel.get_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            assert reply["content"]["status"] == "ok", reply["content"]
            return reply["content"]["subshell_id"]
    raise AssertionError("no create_subshell_reply")


def _send_comm(kc, msg_type: str, content: dict[str, Any], subshell_id: str) -> None:
    msg = kc.session.msg(msg_type, content)
    msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)


def test_frontend_comm_traffic_while_a_remote_cell_runs(remote):
    """comm_msg and comm_close from the frontend, arriving on another thread of the notebook kernel
    while a remote cell runs: the cell completes, nothing breaks, the widget gets the value."""
    cell = remote.ok("import ipywidgets\nslider = ipywidgets.IntSlider(value=3)\nother = ipywidgets.IntSlider(value=1)\n"
                     "display(slider, other)")
    slider_id, other_id = _widget_ids(cell)
    kc = remote.kc
    subshell = _create_subshell(kc)
    msg_id = kc.execute("import time\nfor i in range(15):\n    print('tick', i, flush=True)\n    time.sleep(0.1)")
    stdout, reply, idle, sent = "", None, False, False
    deadline = time.monotonic() + 40
    while reply is None or not idle:
        assert time.monotonic() < deadline, f"the remote cell hung; output so far: {stdout!r}"
        try:
            m = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            m = None
        if m is not None and m["parent_header"].get("msg_id") == msg_id:
            if m["msg_type"] == "stream":
                stdout += m["content"]["text"]
            elif m["msg_type"] == "error":
                stdout += "\n".join(m["content"]["traceback"])
            elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                idle = True
        if not sent and "tick 1" in stdout:
            sent = True  # the remote cell is running: the frontend moves one slider and closes the other
            for value in (5, 6, 7):
                _send_comm(kc, "comm_msg", {"comm_id": slider_id, "data": {"method": "update",
                           "state": {"value": value}, "buffer_paths": []}}, subshell)
            _send_comm(kc, "comm_close", {"comm_id": other_id, "data": {}}, subshell)
        if reply is None:
            try:
                r = kc.get_shell_msg(timeout=0)
                if r["parent_header"].get("msg_id") == msg_id:
                    reply = r["content"]
            except queue.Empty:
                pass
    assert sent
    assert reply["status"] == "ok", stdout
    assert "ZMQError" not in stdout and stdout.count("tick") == 15
    assert remote.km.is_alive()
    # the frontend's messages reached the remote widget, and both kernels still work
    deadline = time.monotonic() + 10
    while (value := remote.ok("print(slider.value)").stdout) != "7\n" and time.monotonic() < deadline:
        pass
    assert value == "7\n"
    # between cells, too, a message from another thread is relayed at once: the remote widget
    # echoes the new value back (ipywidgets 8), with no cell run to carry it
    _send_comm(kc, "comm_msg", {"comm_id": slider_id, "data": {"method": "update", "state": {"value": 9},
               "buffer_paths": []}}, subshell)
    echoed, deadline = False, time.monotonic() + 15
    while not echoed and time.monotonic() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        echoed = (m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == slider_id
                  and m["content"]["data"].get("method") == "echo_update"
                  and m["content"]["data"]["state"].get("value") == 9)
    assert echoed, "the frontend's update was not relayed between cells"
    assert remote.ok("%%run_on local\nprint('notebook alive')").stdout == "notebook alive\n"


def test_interrupting_a_remote_cell_shows_the_remote_keyboard_interrupt(remote):
    cell = remote.run("import time\ntime.sleep(60)", interrupt_after=1.0, timeout=30)
    assert cell.status == "error" and cell.reply["ename"] == "KeyboardInterrupt"
    (err,) = cell.of_type("error")
    assert err["ename"] == "KeyboardInterrupt"
    shown = ANSI.sub("", "\n".join(err["traceback"]))
    assert "time.sleep(60)" in shown, shown  # the remote cell's own frame
    for ours in ("run_cell_magic", "airavata_magic", "magics.py", "manager.py", "relay"):
        assert ours not in shown, shown
    assert remote.ok("print('alive')").stdout == "alive\n"


def test_a_remote_display_in_a_plain_process_prints_its_text_and_makes_no_shell():
    """A script calling the API (no IPython shell): IPython's display machinery would create an
    InteractiveShell singleton there; the sink prints the display's text instead."""
    import subprocess
    import sys

    code = ("from airavata_magic.relay.sink import NotebookSink\n"
            "from IPython.core.interactiveshell import InteractiveShell\n"
            "s = NotebookSink()\n"
            "s.display(None, 'display_data', {'data': {'text/plain': 'shown'}, 'transient': {'display_id': 'd'}})\n"
            "s.display(None, 'update_display_data', {'data': {'text/plain': 'again'}, 'transient': {'display_id': 'd'}})\n"
            "print('shell made:', InteractiveShell.initialized())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "shown\nshell made: False\n"
