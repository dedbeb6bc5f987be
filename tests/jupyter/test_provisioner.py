"""The kernel provisioner: ``papermill -k airavata-PRESET`` runs a whole notebook on a runtime."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from airavata_magic import cli

from .conftest import read_nb

PROFILE = "runtimes:\n  lcpu: {resource: local, walltime: 10}\n"


@pytest.fixture
def preset_env(tmp_path, child_env, monkeypatch):
    prof = tmp_path / "cybershuttle.yml"
    prof.write_text(PROFILE)
    env = dict(child_env, AIRAVATA_MAGIC_PROFILE=str(prof), JUPYTER_PATH=str(tmp_path / "jp" / "share" / "jupyter"))
    for k in ("AIRAVATA_MAGIC_HOME", "AIRAVATA_MAGIC_PROFILE"):
        monkeypatch.setenv(k, env[k])
    return env, prof


def test_kernelspec_install_then_papermill_k_runs_on_a_fresh_runtime(tmp_path, magic_home, preset_env, capsys):
    env, prof = preset_env
    assert cli.main(["kernelspec", "install", "--runtime", "lcpu", "--prefix", str(tmp_path / "jp")]) == 0
    where = capsys.readouterr().out.split(" in ", 1)[1].split(";", 1)[0]
    spec = json.loads((Path(where) / "kernel.json").read_text())
    assert Path(where).name == "airavata-lcpu"
    assert spec["metadata"]["kernel_provisioner"] == {
        "provisioner_name": "airavata-provisioner", "config": {"runtime": "lcpu", "profile": str(prof)}}

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nprint('pid', os.getpid())"),
                nbformat.v4.new_code_cell("from IPython.display import display\ndisplay({'text/plain': 'shown'}, raw=True)\n6 * 7")]
    src = tmp_path / "plain.ipynb"
    nbformat.write(nb, src)
    out = tmp_path / "out.ipynb"
    r = subprocess.run([sys.executable, "-m", "papermill", "-k", "airavata-lcpu", str(src), str(out),
                        "--no-progress-bar"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    cells = read_nb(out)["cells"]
    pid = int(cells[0]["outputs"][0]["text"].split()[1])
    assert cells[1]["outputs"][0]["data"]["text/plain"] == "shown"
    assert cells[1]["outputs"][1]["data"]["text/plain"] == "42"
    # the kernel was a runtime from the preset, and it was stopped when the notebook ended
    records = [json.loads(p.read_text()) for p in (magic_home / "runtimes").glob("lcpu-*.json")]
    assert len(records) == 1
    rec = records[0]
    assert rec["job_id"] == str(pid) and rec["resource"] == "local" and rec["spec"]["walltime"] == 10
    assert rec["state"] == "stopped"
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_kernelspec_install_cli_errors_are_one_line(preset_env, capsys):
    assert cli.main(["kernelspec", "install", "--runtime", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no runtime preset 'nope'") and "presets: lcpu" in err and "\n" not in err
    assert cli.main(["kernelspec", "install", "--runtime", "bad name"]) == 2
    assert "invalid runtime name" in capsys.readouterr().err


def test_provisioner_reports_a_runtime_that_cannot_start(tmp_path, preset_env):
    env, prof = preset_env
    prof.write_text("resources:\n  broken: {kind: local, python: /nonexistent/python}\n"
                    "runtimes:\n  lbroken: {resource: broken}\n")
    from airavata_magic.jupyter.kernelspec import install

    install("lbroken", prefix=str(tmp_path / "jp"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1")]
    nbformat.write(nb, tmp_path / "x.ipynb")
    r = subprocess.run([sys.executable, "-m", "papermill", "-k", "airavata-lbroken", str(tmp_path / "x.ipynb"),
                        str(tmp_path / "y.ipynb"), "--no-progress-bar"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "/nonexistent/python" in r.stderr


def test_template_run_with_runtime_runs_the_whole_notebook_on_a_fresh_runtime(tmp_path, magic_home, preset_env):
    from airavata_magic.sessions import journal, templates

    store = journal.SessionStore(magic_home)
    j = journal.JournalFile(store.path("where"), journal.new_metadata("where"))
    j.append(journal.new_code_cell("n = 1", [], 1, {"runtimes": ["local"], "status": "ok"}))
    j.append(journal.new_code_cell(
        "from ipykernel.connect import get_connection_file\nfrom airavata_magic import record_value\n"
        "record_value('connection_file', get_connection_file())\nrecord_value('n', n)", [], 2,
        {"runtimes": ["local"], "status": "ok"}))
    j.close()
    (tmp_path / "spec.yml").write_text("inputs:\n  n: {type: int, default: 1}\n")
    templates.add("where", "where", str(tmp_path / "spec.yml"))
    r = templates.run("where", pairs=[("n", "5")], runtime="lcpu", output=str(tmp_path / "o.ipynb"), timeout=120)
    assert r.status == "ok", r.error
    assert r.values["n"] == 5
    # the kernel's connection file is the one a runtime of preset lcpu wrote, in the run's private home
    assert "/home/runtimes/lcpu-" in r.values["connection_file"]
    from airavata_magic.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no runtime preset 'nope'.*presets: lcpu"):
        templates.run("where", runtime="nope", output=str(tmp_path / "o2.ipynb"), timeout=60)
    assert not (tmp_path / "o2.ipynb").exists()


def test_session_cli_list_show_export(tmp_path, magic_home, monkeypatch, capsys):
    from airavata_magic.sessions import journal

    monkeypatch.setenv("AIRAVATA_MAGIC_HOME", str(magic_home))
    store = journal.SessionStore(magic_home)
    j = journal.JournalFile(store.path("cli"), journal.new_metadata("cli"))
    j.append(journal.new_code_cell("print('hello')", [], 1, {"runtimes": ["local"], "status": "ok"}))
    j.close()
    assert cli.main(["session", "list"]) == 0
    assert "cli" in capsys.readouterr().out
    assert cli.main(["session", "show", "cli"]) == 0
    assert "print('hello')" in capsys.readouterr().out
    assert cli.main(["session", "export", "cli", str(tmp_path / "cli.ipynb")]) == 0
    nbformat.validate(nbformat.read(tmp_path / "cli.ipynb", as_version=4))
    assert cli.main(["session", "show", "missing"]) == 2
    assert capsys.readouterr().err.startswith("error: no session named 'missing'")
    assert cli.main(["session", "replay", "cli", "-o", str(tmp_path / "r.ipynb")]) == 0
    assert "hello" in (tmp_path / "r.ipynb").read_text()


def test_jupyter_client_start_interrupt_restart_shutdown(tmp_path, magic_home, preset_env):
    """What JupyterLab does with a kernelspec: start, interrupt a running cell, restart, shut down."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    from airavata_magic.jupyter.kernelspec import write_spec

    write_spec("lcpu", tmp_path / "ks" / "kernels")
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "ks" / "kernels")])
    km = KernelManager(kernel_name="airavata-lcpu", kernel_spec_manager=ksm)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)

        def run(code: str, timeout: float = 30):
            out: list[str] = []
            reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append(
                m["content"].get("text") or m["content"].get("ename") or "") if m["msg_type"] in ("stream", "error") else None)
            return reply["content"]["status"], "".join(out)

        status, out = run("import os\nprint(os.getpid())")
        first_pid = int(out)
        name = next((magic_home / "runtimes").glob("lcpu-*.json")).stem
        assert json.loads((magic_home / "runtimes" / f"{name}.json").read_text())["job_id"] == str(first_pid)

        import threading
        import time as _t

        threading.Timer(1.0, km.interrupt_kernel).start()
        t0 = _t.monotonic()
        status, out = run("import time\ntime.sleep(30)")
        assert status == "error" and "KeyboardInterrupt" in out and _t.monotonic() - t0 < 10
        assert run("1 + 1")[0] == "ok"  # still usable

        km.restart_kernel()
        # A restart is a fresh runtime with new ports (as with any remote provisioner; jupyter_server
        # notices ports_changed and reconnects the browser): clients connect again.
        kc.stop_channels()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        status, out = run("import os\nprint(os.getpid())\nprint('x' in dir())")
        second_pid = int(out.split()[0])
        assert second_pid != first_pid and out.split()[1] == "False"  # a fresh kernel: variables gone
        assert not Path(f"/proc/{first_pid}").exists() or "Z" in Path(f"/proc/{first_pid}/stat").read_text().split()[2]
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    rec = json.loads((magic_home / "runtimes" / f"{name}.json").read_text())
    assert rec["state"] in ("stopped", "dead") and rec["job_id"] == str(second_pid)
    assert not Path(f"/proc/{second_pid}").exists() or "Z" in Path(f"/proc/{second_pid}/stat").read_text().split()[2]


def test_interrupted_papermill_leaves_no_runtime_behind(tmp_path, magic_home, preset_env):
    """SIGINT to papermill while the runtime is still starting: the runtime is stopped on exit."""
    import signal
    import time

    env, prof = preset_env
    slow = tmp_path / "slowpython"
    slow.write_text(f"#!/bin/sh\necho $$ > {tmp_path}/slow.pid\nsleep 60\nexec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    prof.write_text(f"resources:\n  slowres: {{kind: local, python: {slow}}}\nruntimes:\n  lslow: {{resource: slowres}}\n")
    from airavata_magic.jupyter.kernelspec import install

    install("lslow", prefix=str(tmp_path / "jp"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1")]
    nbformat.write(nb, tmp_path / "x.ipynb")
    proc = subprocess.Popen([sys.executable, "-m", "papermill", "-k", "airavata-lslow", str(tmp_path / "x.ipynb"),
                             str(tmp_path / "y.ipynb"), "--no-progress-bar"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list((magic_home / "runtimes").glob("lslow-*.json")) or not (tmp_path / "slow.pid").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "no runtime"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    rec = json.loads(next((magic_home / "runtimes").glob("lslow-*.json")).read_text())
    assert rec["state"] == "stopped"
    pid = int((tmp_path / "slow.pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_the_async_kernel_manager_jupyter_server_uses(tmp_path, magic_home, preset_env):
    """jupyter_server (JupyterLab) drives kernels with AsyncIOLoopKernelManager inside its event loop."""
    import asyncio

    from jupyter_client.ioloop import AsyncIOLoopKernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    from airavata_magic.jupyter.kernelspec import write_spec

    write_spec("lcpu", tmp_path / "ks" / "kernels")

    async def session() -> str:
        ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "ks" / "kernels")])
        km = AsyncIOLoopKernelManager(kernel_name="airavata-lcpu", kernel_spec_manager=ksm)
        await km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            assert await km.is_alive()
            reply = await kc.execute_interactive("print('from the runtime')", timeout=30)
            return reply["content"]["status"]
        finally:
            kc.stop_channels()
            await km.shutdown_kernel()

    assert asyncio.run(session()) == "ok"
    rec = json.loads(next((magic_home / "runtimes").glob("lcpu-*.json")).read_text())
    assert rec["state"] in ("stopped", "dead")
