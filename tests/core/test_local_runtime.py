"""The local runtime end to end: a real notebook kernel relaying to a real runtime kernel."""
from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest


def start_demo(nb, name: str = "demo", extra: str = "") -> None:
    nb.ok(f"%request_runtime {name} --resource local {extra}")
    nb.ok(f"%wait_for_runtime {name} --timeout 60")


@pytest.fixture
def remote(notebook):
    start_demo(notebook)
    notebook.ok("%switch_runtime demo")
    return notebook


def test_cells_run_remotely_and_results_set_out(remote):
    local_pid = remote.ok("%%run_on local\nimport os; print(os.getpid())").stdout.strip()
    cell = remote.ok("import os\nprint(os.getpid())\n40 + 2")
    remote_pid = cell.stdout.strip()
    assert remote_pid and remote_pid != local_pid
    (result,) = cell.of_type("execute_result")
    assert result["data"]["text/plain"] == "42"
    assert result["execution_count"] == cell.reply["execution_count"]  # the notebook's count
    # Out and _ are set in the notebook kernel itself
    assert remote.ok(f"%%run_on local\nprint(_ + 1, Out[{cell.reply['execution_count']}])").stdout.strip() == "43 42"
    # state persists on the runtime between cells
    remote.ok("x = 7")
    assert remote.ok("print(x * 6)").stdout == "42\n"


def test_rich_outputs_display_update_and_clear(remote):
    cell = remote.ok(
        "from IPython.display import display, HTML, Markdown, clear_output\n"
        "h = display(HTML('<b>one</b>'), display_id='d1')\n"
        "h.update(HTML('<b>two</b>'))\n"
        "display(Markdown('*md*'))\n"
        "print('before clear')\n"
        "clear_output(wait=True)\n"
        "print('after clear')\n"
    )
    kinds = [o["output_type"] for o in cell.outputs]
    assert kinds == ["display_data", "update_display_data", "display_data", "stream", "clear_output", "stream"]
    assert cell.outputs[0]["transient"] == {"display_id": "d1"}
    assert cell.outputs[1]["transient"] == {"display_id": "d1"}
    assert cell.outputs[1]["data"]["text/html"] == "<b>two</b>"
    assert cell.outputs[2]["data"]["text/markdown"] == "*md*"
    assert cell.outputs[4]["wait"] is True


def test_rich_execute_result_keeps_mime_bundle(remote):
    cell = remote.ok("from IPython.display import HTML\nHTML('<i>rich</i>')")
    (res,) = cell.of_type("execute_result")
    assert res["data"]["text/html"] == "<i>rich</i>"


def test_streams_arrive_while_cell_runs(remote):
    """stdout is relayed live: the first line arrives long before the cell ends."""
    code = "import time, sys\nprint('first', flush=True)\ntime.sleep(2)\nprint('second')"
    kc = remote.kc
    t0 = time.monotonic()
    msg_id = kc.execute(code)
    first_at = None
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and "first" in msg["content"]["text"] and first_at is None:
            first_at = time.monotonic() - t0
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    total = time.monotonic() - t0
    assert first_at is not None and first_at < 1.5 and total >= 2.0


def test_stderr_is_relayed_as_stderr(remote):
    cell = remote.ok("import sys; sys.stderr.write('oops\\n'); print('fine')")
    assert cell.stderr == "oops\n" and cell.stdout == "fine\n"


def test_remote_error_fails_the_cell_with_remote_traceback(remote):
    cell = remote.run("def f():\n    return 1/0\nf()")
    assert cell.status == "error"
    assert cell.reply["ename"] == "ZeroDivisionError"
    (err,) = cell.of_type("error")
    assert err["ename"] == "ZeroDivisionError" and err["evalue"] == "division by zero"
    import re

    joined = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(err["traceback"]))
    assert "return 1/0" in joined and "airavata_magic" not in joined
    # the notebook and the runtime are both still usable
    assert remote.ok("print('still here')").stdout == "still here\n"


def test_input_and_getpass_are_answered_from_the_notebook(remote):
    cell = remote.ok("name = input('who? ')\nprint('hello', name)", stdin=["ada"])
    assert "hello ada" in cell.stdout
    cell = remote.ok("import getpass\npw = getpass.getpass('pw: ')\nprint(len(pw))", stdin=["s3cr3t-value"])
    assert cell.stdout.strip().endswith("12")
    assert "s3cr3t-value" not in cell.text


def test_input_without_stdin_fails_clearly(remote):
    cell = remote.run("input('x')", allow_stdin=False)
    assert cell.status == "error" and cell.reply["ename"] == "StdinNotImplementedError"


def test_interrupt_stops_remote_sleep_quickly(remote):
    t0 = time.monotonic()
    cell = remote.run("import time\ntime.sleep(60)", interrupt_after=1.0, timeout=30)
    elapsed = time.monotonic() - t0
    assert cell.status == "error" and cell.reply["ename"] == "KeyboardInterrupt"
    assert elapsed < 3.0, f"interrupt took {elapsed:.1f} s"
    assert remote.ok("print('alive')").stdout == "alive\n"
    assert remote.ok("%%run_on local\nprint('local alive')").stdout == "local alive\n"


def test_interrupt_runtime_magic(notebook):
    start_demo(notebook)
    # a long cell in the runtime, driven from a second client to the same runtime
    from jupyter_client import BlockingKernelClient

    home = Path(notebook.env["AIRAVATA_MAGIC_HOME"])
    conn = json.loads((home / "runtimes" / "demo.json").read_text())["backend_state"]["connection_file"]
    kc = BlockingKernelClient(connection_file=conn)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=30)
        msg_id = kc.execute("import time; time.sleep(60)")
        time.sleep(0.5)
        t0 = time.monotonic()
        notebook.ok("%interrupt_runtime demo")
        reply = kc.get_shell_msg(timeout=10)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert time.monotonic() - t0 < 3
    finally:
        kc.stop_channels()


def test_restart_clears_variables_same_runtime(remote):
    remote.ok("y = 5")
    cell = remote.ok("%restart_runtime demo")
    assert "restarted" in cell.stdout
    cell = remote.run("print(y)")
    assert cell.status == "error" and cell.reply["ename"] == "NameError"
    assert remote.ok("print('ok')").stdout == "ok\n"


def test_killed_kernel_ends_cell_within_5_s_and_is_marked_dead(remote):
    pid = int(remote.ok("import os; print(os.getpid())").stdout)
    t0 = time.monotonic()
    cell = remote.run(f"import os, signal, time\ntime.sleep(0.5)\nos.kill({pid}, signal.SIGKILL)\ntime.sleep(30)", timeout=30)
    elapsed = time.monotonic() - t0
    assert cell.status == "error"
    assert elapsed < 5.5, f"took {elapsed:.1f} s"
    assert "demo" in cell.stderr and "dead" in cell.stderr
    table = remote.ok("%%run_on local\nprint(get_ipython().run_line_magic('runtimes', '').set_index('name').loc['demo', 'state'])")
    assert table.stdout.strip() == "dead"
    # the runtime was current; the notebook is local again and usable
    assert remote.ok("print('local')").stdout == "local\n"


def test_heartbeat_detects_a_frozen_kernel(remote):
    """SIGSTOP freezes the kernel without killing it: only the heartbeat can tell."""
    pid = int(remote.ok("import os; print(os.getpid())").stdout)
    home = Path(remote.env["AIRAVATA_MAGIC_HOME"])
    rec = json.loads((home / "runtimes" / "demo.json").read_text())
    assert rec["backend_state"]["pid"] == pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        cell = remote.run("print('never')", timeout=30)
        assert cell.status == "error" and time.monotonic() - t0 < 5.0
        assert "heartbeat" in cell.stderr
    finally:
        os.kill(pid, signal.SIGCONT)


def test_attach_after_notebook_restart(notebook):
    start_demo(notebook)
    notebook.ok("%%run_on demo\nkept = 'value kept'")
    notebook.restart()
    cell = notebook.ok("%attach_runtime demo")
    assert "attached" in cell.stdout
    assert notebook.ok("%%run_on demo\nprint(kept)").stdout == "value kept\n"
    # a runtime recorded as ready is also reconnected on first use, without %attach_runtime
    notebook.restart()
    assert notebook.ok("%switch_runtime demo\nprint(kept)").stdout.endswith("value kept\n")


def test_leading_magic_lines_run_locally_rest_remotely(notebook):
    start_demo(notebook)
    local_pid = notebook.ok("import os; print(os.getpid())").stdout.strip()
    cell = notebook.ok("%switch_runtime demo\nimport os\nprint(os.getpid())")
    lines = cell.stdout.strip().splitlines()
    assert lines[0] == "cells run on 'demo'" and lines[1] != local_pid
    cell = notebook.ok("%switch_runtime local\nimport os\nprint(os.getpid())")
    assert cell.stdout.strip().splitlines()[-1] == local_pid
    # a cell magic for the remote side is routed whole
    notebook.ok("%switch_runtime demo")
    cell = notebook.ok("%%bash\necho from-bash $$")
    assert cell.stdout.startswith("from-bash")


def test_run_on_several_runtimes_labels_outputs(notebook):
    start_demo(notebook, "a")
    start_demo(notebook, "b")
    cell = notebook.ok("%%run_on a,b\nimport time\nprint('hi'); time.sleep(1)\n21 * 2")
    assert "[a] hi\n" in cell.stdout and "[b] hi\n" in cell.stdout
    assert sum("42" in o.get("data", {}).get("text/plain", "") for o in cell.of_type("display_data")) == 2
    # both ran at once: about 1 s, not 2
    t0 = time.monotonic()
    notebook.ok("%%run_on a,b\nimport time; time.sleep(1.5)")
    assert time.monotonic() - t0 < 2.8
    cell = notebook.run("%%run_on a,b\nraise ValueError('bad')")
    assert cell.status == "error" and cell.reply["ename"] == "ValueError"
    assert "[a]" in "\n".join(cell.of_type("error")[0]["traceback"])


def test_wait_live_updates_one_display(notebook):
    notebook.ok("%request_runtime demo --resource local")
    cell = notebook.ok("%wait_for_runtime demo --live")
    displays = cell.of_type("display_data")
    updates = cell.of_type("update_display_data")
    assert len(displays) == 1 and updates
    did = displays[0]["transient"]["display_id"]
    assert all(u["transient"]["display_id"] == did for u in updates)
    assert "state: ready" in updates[-1]["data"]["text/plain"]
    assert "<table>" in updates[-1]["data"]["text/html"]
    # the outcome is in the same display, not a line printed after it: one output area
    assert "runtime 'demo' is ready" in updates[-1]["data"]["text/plain"] and not cell.stdout
    # the runtime's own start-up banner stays in its log, out of the cell (issue 8, fix 9)
    shown = "".join(str(m["data"]) for m in displays + updates) + cell.stdout + cell.stderr
    assert "To connect another client" not in shown and "--existing" not in shown


def test_wait_fails_at_once_with_reason_and_log_tail(notebook, tmp_path):
    bad = tmp_path / "bad-python"
    bad.write_text("#!/bin/sh\necho 'cannot import ipykernel: broken env' >&2\nexit 3\n")
    bad.chmod(0o755)
    prof = tmp_path / "cybershuttle.yml"
    prof.write_text(f"resources:\n  broken:\n    kind: local\n    python: {bad}\n")
    notebook.ok(f"%request_runtime br --file {prof} --resource broken")
    t0 = time.monotonic()
    cell = notebook.run("%wait_for_runtime br --live")
    assert cell.status == "error" and time.monotonic() - t0 < 10
    assert "UsageError: runtime 'br' dead" in cell.stderr
    assert "broken env" in cell.stderr  # the log tail


def test_stop_current_switches_back_to_local(remote):
    cell = remote.ok("%stop_runtime demo")
    assert "cells run locally again" in cell.stdout
    local = remote.ok("import os; print(os.getpid())").stdout.strip()
    assert local == str(remote.km.provisioner.process.pid)
    cell = remote.run("%%run_on demo\n1")
    assert cell.status == "error" and "stopped" in cell.stderr


def test_stop_all_and_process_is_gone(notebook):
    start_demo(notebook, "s1")
    start_demo(notebook, "s2")
    home = Path(notebook.env["AIRAVATA_MAGIC_HOME"])
    pids = [json.loads((home / "runtimes" / f"{n}.json").read_text())["backend_state"]["pid"] for n in ("s1", "s2")]
    assert "stopped" in notebook.ok("%stop_runtime --all").stdout
    time.sleep(0.2)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_runtimes_table_and_stat(notebook):
    start_demo(notebook, "t1", "--cpus 2 --memory 1G --walltime 30")
    cell = notebook.ok("df = %runtimes\nprint(list(df.columns))\nprint(df.loc[0, 'state'], df.loc[0, 'memory'], df.loc[0, 'cpus'])")
    assert "'name', 'resource', 'state', 'job id', 'node', 'cpus', 'gpus', 'memory', 'walltime left'" in cell.stdout
    assert "ready 1024M 2" in cell.stdout
    cell = notebook.ok("s = %stat_runtime t1\nprint(s.loc['GPUs seen', 'value'], s.loc['state', 'value'], s.loc['walltime left', 'value'][:3])")
    assert cell.stdout.split() == ["none", "ready", "0:2"]


def test_walltime_warning_and_expiry(notebook):
    """A 1-minute walltime on the local resource: warned at once, expired after it."""
    notebook.ok("%request_runtime short --resource local --walltime 1")
    cell = notebook.ok("%wait_for_runtime short")
    assert "reaches its walltime in 0:00:5" in cell.stderr or "reaches its walltime in 0:01:00" in cell.stderr
    cell = notebook.ok("%%run_on short\nprint('working')")
    assert "working" in cell.stdout and "walltime" not in cell.stderr  # each warning once
    cell = notebook.ok("%%run_on short\nprint('again')")
    assert "walltime" not in cell.stderr  # each warning once
    home = Path(notebook.env["AIRAVATA_MAGIC_HOME"])
    ends_at = json.loads((home / "runtimes" / "short.json").read_text())["ends_at"]
    time.sleep(max(0.0, ends_at - time.time()) + 0.5)
    cell = notebook.run("%%run_on short\nprint('too late')")
    assert cell.status == "error" and "expired" in cell.stderr
    assert "too late" not in cell.stdout


def test_private_files_and_loopback_binds(notebook):
    start_demo(notebook)
    home = Path(notebook.env["AIRAVATA_MAGIC_HOME"])
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    rec_path = home / "runtimes" / "demo.json"
    assert stat.S_IMODE(rec_path.stat().st_mode) == 0o600
    rec = json.loads(rec_path.read_text())
    conn = Path(rec["backend_state"]["connection_file"])
    assert stat.S_IMODE(conn.stat().st_mode) == 0o600
    assert stat.S_IMODE(conn.parent.stat().st_mode) == 0o700
    info = json.loads(conn.read_text())
    assert info["ip"] == "127.0.0.1" and len(info["key"]) == 64
    assert info["key"] not in rec_path.read_text()  # the record holds no secret
    # every listening socket of the runtime kernel is on loopback
    pid = rec["backend_state"]["pid"]
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")}
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:] + Path("/proc/net/tcp6").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:
            listening.append(f[1])
    assert len(listening) >= 5
    assert all(addr.startswith("0100007F:") for addr in listening), listening


def test_authenticate_local(notebook):
    cell = notebook.ok("%authenticate")
    assert cell.stdout.startswith("local") and " ok " in cell.stdout


def test_import_inside_ipython_registers_magics(notebook_factory):
    nb = notebook_factory(load=False)
    assert nb.run("%runtimes").status == "error"
    nb.ok("import airavata_magic")
    assert nb.ok("%runtimes").status == "ok"
    cell = nb.ok("%lsmagic")
    for name in ("request_runtime", "wait_for_runtime", "switch_runtime", "run_on", "stop_runtime"):
        assert name in cell.text
    help_text = nb.ok("%request_runtime?").text + nb.ok("print(get_ipython().find_line_magic('request_runtime').__doc__)").stdout
    assert "--walltime" in help_text and "--use" in help_text


def test_import_outside_ipython_registers_nothing(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, airavata_magic; print('IPython' in sys.modules)"],
                         capture_output=True, text=True, env={**os.environ, "AIRAVATA_MAGIC_HOME": str(tmp_path)})
    assert out.returncode == 0 and out.stdout.strip() == "False"


def test_walltime_warning_arrives_while_no_cell_runs(notebook):
    """The 1-minute warning is raised by a timer, not by the next cell."""
    notebook.ok("import airavata_magic\nairavata_magic.get_manager().warn_before = (300, 57)")
    notebook.ok("%request_runtime idle --resource local --walltime 1")
    cell = notebook.ok("%wait_for_runtime idle")
    assert "reaches its walltime" in cell.stderr  # 300 s: crossed at once
    msgs = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            m = notebook.kc.get_iopub_msg(timeout=1)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        if m["msg_type"] == "stream" and "reaches its walltime in 0:00:5" in m["content"]["text"]:
            msgs.append(m)
            break
    assert msgs, "no warning while idle"


def test_a_replaced_kernel_is_reported_not_silently_used(remote):
    """A kernel restarted behind our back (same ports and key) must not run cells as if nothing
    happened: its variables are gone. Simulated by restarting the process outside the manager."""
    remote.ok("z = 1")
    home = Path(remote.env["AIRAVATA_MAGIC_HOME"])
    rec = json.loads((home / "runtimes" / "demo.json").read_text())
    conn = rec["backend_state"]["connection_file"]
    os.killpg(rec["backend_state"]["pid"], signal.SIGKILL)
    import subprocess
    import sys

    time.sleep(0.3)
    proc = subprocess.Popen([sys.executable, "-m", "ipykernel_launcher", "-f", conn], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)
        cell = remote.run("print(z)", timeout=30)
        assert cell.status == "error"
        assert "was replaced" in cell.stderr or "has exited" in cell.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
