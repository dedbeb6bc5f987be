"""Scripts as users run them: a child Python process using only the API, Ctrl-C, and the exit."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from airavata_magic.runtime import RuntimeStore
from airavata_magic.sessions.runner import run_notebook

from .conftest import ROOT


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] not in ("Z", "X")


def test_example_script_runs_and_its_export_replays_with_papermill(script_env, magic_home, tmp_path):
    exported = tmp_path / "quickstart-session.ipynb"
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "api_quickstart.py"), str(exported)],
                       env=script_env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the runtime says: 45" in r.stdout
    assert "collected through a callback: ['line 0', 'line 1', 'line 2']" in r.stdout
    assert "the remote error came back: ZeroDivisionError: division by zero" in r.stdout
    assert RuntimeStore(magic_home).load("api-demo").state.value == "stopped"
    cells = [c for c in json.loads(exported.read_text())["cells"] if c["cell_type"] == "code"]
    assert ["".join(c["source"]).split("(")[0] for c in cells] == [
        "import airavata_magic as am", "api_demo = am.request_runtime", "api_demo.wait", "api_demo.run",
        "api_demo.run", "api_demo.run", "am.runtimes", "api_demo.stop"]

    out = tmp_path / "replayed.ipynb"
    result = run_notebook(exported, out, env=script_env, cwd=str(tmp_path), timeout=180)
    assert result.status == "ok", result.error
    replayed = [c for c in json.loads(out.read_text())["cells"] if c["cell_type"] == "code"]
    texts = ["".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                     for o in c["outputs"]) for c in replayed]
    assert texts[3].startswith("hello from pid ") and texts[4] == "45"
    assert texts[5] == "line 0\nline 1\nline 2\n"


SCRIPT = textwrap.dedent("""
    import sys
    import airavata_magic as am

    kept = am.request_runtime("kept", resource="local", keep=True)
    busy = am.request_runtime("busy", resource="local")
    kept.wait(60, progress=False)
    busy.wait(60, progress=False)
    busy.run('''
    import pathlib, time
    try:
        print("sleeping", flush=True)
        time.sleep(120)
    except KeyboardInterrupt:
        pathlib.Path(sys_argv_marker).write_text("interrupted")
        raise
    '''.replace("sys_argv_marker", repr(sys.argv[1])))
    print("not reached")
""")


def test_ctrl_c_interrupts_the_remote_cell_then_exit_stops_the_script_runtimes(script_env, magic_home, tmp_path):
    script, marker = tmp_path / "long.py", tmp_path / "interrupted.txt"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], env=script_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "sleeping" not in line:
            assert time.monotonic() < deadline, "the remote cell never started"
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
        store = RuntimeStore(magic_home)
        busy_pid = store.load("busy").backend_state["pid"]
        kept_pid = store.load("kept").backend_state["pid"]
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends to the script
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (-signal.SIGINT, 130), (proc.returncode, err)
    assert "KeyboardInterrupt" in err and "not reached" not in rest
    assert marker.read_text() == "interrupted"  # the remote cell got the interrupt first
    assert "runtime 'busy' stopped at script exit" in err
    assert store.load("busy").state.value == "stopped" and not _pid_alive(busy_pid)
    # keep=True: still there for the next script or notebook
    assert store.load("kept").state.value == "ready" and _pid_alive(kept_pid)
    assert "kept" not in err


def test_a_magic_and_its_api_call_make_the_same_runtime_record(notebook, magic_home):
    notebook.ok("%request_runtime by-magic --resource local --cpus 2 --memory 1G --walltime 20")
    notebook.ok("import airavata_magic as am\n"
                "h = am.request_runtime('by-api', resource='local', cpus=2, memory='1G', walltime=20)")
    assert notebook.ok("print(h.keep)").stdout == "True\n"  # inside IPython runtimes are kept
    store = RuntimeStore(magic_home)
    a, b = store.load("by-magic").to_json(), store.load("by-api").to_json()
    differ = {"name", "job_id", "created_at", "ends_at", "owner_pid", "backend_state", "state", "ready_at"}
    assert {k: v for k, v in a.items() if k not in differ} == {k: v for k, v in b.items() if k not in differ}
    assert a["spec"] == {"cpus": 2, "gpus": None, "memory": 1024, "walltime": 20, "partition": None,
                         "account": None, "image": None, "node": None}
    # and the API handle drives a runtime the magic requested: one manager in the kernel
    notebook.ok("%wait_for_runtime by-magic --timeout 60")
    assert notebook.ok("print(am.get_runtime('by-magic').run('6 * 7'))").stdout == "42\n"


def test_sigterm_ends_the_script_and_still_stops_its_runtime(script_env, magic_home, tmp_path):
    script = tmp_path / "batch.py"
    script.write_text("import time, airavata_magic as am\n"
                      "rt = am.request_runtime('batch', resource='local')\n"
                      "rt.wait(60, progress=False)\n"
                      "print('READY', flush=True)\n"
                      "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env=script_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "READY\n", proc.stderr.read()
        pid = RuntimeStore(magic_home).load("batch").backend_state["pid"]
        proc.terminate()  # what scancel or a batch system's kill sends first
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "runtime 'batch' stopped at script exit" in err
    assert RuntimeStore(magic_home).load("batch").state.value == "stopped" and not _pid_alive(pid)
