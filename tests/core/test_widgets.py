"""ipywidgets on a runtime: comm messages relayed both ways through the notebook kernel."""
from __future__ import annotations

import time


def test_remote_widget_renders_and_takes_frontend_updates(notebook):
    notebook.ok("%request_runtime w --resource local")
    notebook.ok("%wait_for_runtime w")
    notebook.ok("%switch_runtime w")
    cell = notebook.ok("import ipywidgets\nslider = ipywidgets.IntSlider(value=3)\ndisplay(slider)")
    opens = [m for m in cell.messages if m["msg_type"] == "comm_open"]
    assert opens, [m["msg_type"] for m in cell.messages]
    view = [o for o in cell.of_type("display_data") if "application/vnd.jupyter.widget-view+json" in o["data"]]
    assert view
    model_id = view[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert model_id in {m["content"]["comm_id"] for m in opens}
    # the frontend moves the slider: a comm_msg to the notebook kernel reaches the remote widget
    kc = notebook.kc
    msg = kc.session.msg("comm_msg", {"comm_id": model_id,
                                      "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}})
    kc.shell_channel.send(msg)
    deadline = time.monotonic() + 10
    idle = False
    while not idle and time.monotonic() < deadline:
        m = kc.get_iopub_msg(timeout=10)
        idle = (m["parent_header"].get("msg_id") == msg["header"]["msg_id"] and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle")
    assert idle
    assert notebook.ok("print(slider.value)").stdout == "7\n"
    # and a change made on the remote side reaches the frontend as a comm_msg
    cell = notebook.ok("slider.value = 9")
    updates = [m for m in cell.messages if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == model_id]
    assert updates and updates[-1]["content"]["data"]["state"]["value"] == 9
