"""The Python API against real local runtimes, in this process: the same manager the magics use."""
from __future__ import annotations

import json
import os

import pytest

import airavata_magic as am
from airavata_magic.errors import AiravataError, InvalidArgument, RuntimeNotFound


@pytest.fixture(scope="module")
def rt(api_home):
    handle = am.request_runtime("api-rt", resource="local", memory="1G", walltime=30)
    assert handle.message.startswith("runtime 'api-rt' requested on local (job ")
    assert handle.wait(timeout=60, progress=False) is handle
    yield handle
    handle.stop()


def test_run_streams_returns_values_and_raises_remote_errors(rt, capfd):
    assert rt.state == "ready"
    assert rt.run("print('to stdout'); import sys; print('to stderr', file=sys.stderr)") is None
    out, err = capfd.readouterr()
    assert "to stdout\n" in out and "to stderr\n" in err
    assert rt.run("40 + 2") == 42
    assert rt.run("{'a': [1, 2.5, 'x']}") == {"a": [1, 2.5, "x"]}
    value = rt.run("range(3)")  # not a literal: the remote rendering comes back
    assert isinstance(value, am.RemoteValue) and repr(value) == "range(0, 3)"
    rt.run("state = 7")
    assert rt.run("state * 6") == 42  # the kernel keeps its variables between calls

    seen: list[tuple[str, str]] = []
    rt.run("print('a'); import sys; print('b', file=sys.stderr)", on_output=lambda n, t: seen.append((n, t)))
    assert ("stdout", "a\n") in seen and ("stderr", "b\n") in seen
    assert capfd.readouterr().out == ""  # with a callback nothing is printed here

    with pytest.raises(am.RemoteError) as info:
        rt.run("def inner():\n    raise ValueError('bad value 17')\ninner()")
    e = info.value
    assert isinstance(e, AiravataError)
    assert (e.ename, e.evalue, e.runtime) == ("ValueError", "bad value 17", "api-rt")
    assert "\n" not in str(e) and "bad value 17" in str(e)
    tb = "\n".join(e.remote_traceback)
    assert "inner()" in tb and "raise ValueError('bad value 17')" in tb and "\x1b[" not in tb
    assert any("remote traceback" in n for n in getattr(e, "__notes__", []))
    assert rt.run("1 + 1") == 2  # still usable after an error


def test_stat_runtimes_and_handles(rt):
    info = rt.stat()
    assert info["state"] == "ready" and info["resource"] == "local" and info["memory"] == 1024
    assert info["kernel python"] and info["walltime left"]
    table = am.runtimes()
    row = table[table["name"] == "api-rt"].iloc[0]
    assert (row["state"], row["resource"], row["memory"]) == ("ready", "local", "1024M")
    same = am.get_runtime("api-rt")
    assert same.run("state") == 7  # a second handle reaches the same kernel
    assert "api-rt" in repr(same) and "ready" in repr(same)
    auth = am.authenticate("local")  # no profile here: the built-in local resource
    assert list(auth.columns) == ["resource", "kind", "ok", "detail"]
    assert auth.iloc[0]["resource"] == "local" and bool(auth.iloc[0]["ok"]) and "ipykernel" in auth.iloc[0]["detail"]


def test_bad_input_is_one_clear_error(api_home):
    cases = [
        (lambda: am.request_runtime("x", resource="no-such-resource"), "no-such-resource"),
        (lambda: am.request_runtime("x", resource="local", cpus=0), "cpus"),
        (lambda: am.request_runtime("bad name", resource="local"), "invalid runtime name"),
        (lambda: am.request_runtime("local", resource="local"), "'local' is the notebook's own kernel"),
        (lambda: am.request_runtime("x", resource="local", keep="yes"), "keep must be True or False"),
        (lambda: am.get_runtime("never-requested"), "never-requested"),
        (lambda: am.Runtime("api-x").wait(timeout=-1), "invalid timeout"),
        (lambda: am.session.export("nothing-here", "out.txt"), ".ipynb"),
    ]
    for call, words in cases:
        with pytest.raises(AiravataError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(RuntimeNotFound):
        am.get_runtime("never-requested")
    with pytest.raises(InvalidArgument):
        am.get_runtime("api-rt").run(b"print(1)")  # type: ignore[arg-type]


def test_script_session_records_calls_with_secrets_redacted(rt, api_home):
    assert am.session.start("api-calls").startswith("recording session 'api-calls'")
    try:
        with pytest.raises(InvalidArgument, match="is recording"):
            am.session.start("another")
        rt.run("api_key = 'sekret-value-991'\nprint('key is', api_key)\n")
        rt.run("print(len(api_key))")
        with pytest.raises(am.RemoteError):
            rt.run("undefined_name")
        am.runtimes()
    finally:
        msg = am.session.stop()
    assert msg.startswith("session 'api-calls' stopped: 4 calls")
    raw = (api_home / "sessions" / "api-calls.ipynb").read_text()
    assert "sekret-value-991" not in raw
    nb = json.loads(raw)
    assert nb["metadata"]["airavata"]["session"]["kind"] == "script"
    cells = nb["cells"]
    # the handle came from a fixture before the session began: the first call binds it by name
    assert cells[0]["source"].startswith("api_rt = am.get_runtime('api-rt')\napi_rt.run(")
    assert cells[1]["source"] == "api_rt.run('print(len(api_key))')"
    assert cells[0]["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "key is <redacted>\n"}]
    metas = [c["metadata"]["airavata"] for c in cells]
    assert [m["call"] for m in metas] == ["run", "run", "run", "runtimes"]
    assert [m["status"] for m in metas] == ["ok", "ok", "error", "ok"]
    assert metas[2]["result"].startswith("RemoteError: NameError")
    assert cells[2]["outputs"][0]["output_type"] == "error"
    assert all(m["duration"] >= 0 for m in metas) and metas[3]["result"].startswith("DataFrame with")
    table = am.session.list()
    assert table[table["name"] == "api-calls"].iloc[0]["kind"] == "script"
    assert list(am.session.show("api-calls")["status"]) == ["ok", "ok", "error", "ok"]
    out = api_home / "api-calls-export.ipynb"
    am.session.export("api-calls", str(out))
    exported = json.loads(out.read_text())
    sources = ["".join(c["source"]) for c in exported["cells"] if c["cell_type"] == "code"]
    assert sources[0] == "import airavata_magic as am"
    assert "undefined_name" not in "".join(sources)  # the failed call is left out, and said so
    assert "which failed when recorded" in "".join(exported["cells"][0]["source"])
    assert os.stat(api_home / "sessions" / "api-calls.ipynb").st_mode & 0o077 == 0
