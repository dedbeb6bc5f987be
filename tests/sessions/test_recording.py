"""Recording in a real notebook kernel, export, and replay under papermill (real processes only)."""
from __future__ import annotations

import json
import os
import signal
import time

import nbformat

from .conftest import comparable, read_nb

DETERMINISTIC = [
    "import random\nrandom.seed(7)\nvalues = [random.randint(0, 100) for _ in range(5)]\nprint(values)",
    "sum(values)",
    "from IPython.display import display, HTML\ndisplay(HTML('<b>bold</b>'))\nprint('to stderr', file=__import__('sys').stderr)",
    "%%run_on alpha\nimport random\nrandom.seed(1)\nremote = random.random()\nprint('alpha', round(remote, 6))",
    "%%run_on alpha,beta\nprint('both')",
    "%switch_runtime beta\nbeta_value = 6 * 7\nbeta_value",
    "%switch_runtime local\nprint('back', sum(values))",
]


def test_record_export_replay_identical_outputs_two_runtimes(notebook, tmp_path, magic_home, papermill):
    nb = notebook
    nb.ok("%request_runtime alpha --resource local\n%request_runtime beta --resource local")
    nb.ok("%wait_for_runtime alpha\n%wait_for_runtime beta")
    nb.ok("%session start two")
    recorded = [nb.ok(code) for code in DETERMINISTIC]
    nb.ok("%stop_runtime alpha\n%stop_runtime beta")
    stop = nb.ok("%session stop")
    assert "8 cells" in stop.stdout

    journal = read_nb(magic_home / "sessions" / "two.ipynb")
    nbformat.validate(nbformat.from_dict(journal))
    cells = journal["cells"]
    assert [c["source"] for c in cells[:7]] == DETERMINISTIC  # as typed, magics included
    assert [c["metadata"]["airavata"]["runtimes"] for c in cells] == [
        ["local"], ["local"], ["local"], ["alpha"], ["alpha", "beta"], ["beta"], ["local"], ["local"]]
    assert all(c["metadata"]["airavata"]["status"] == "ok" for c in cells)
    assert all(c["metadata"]["airavata"]["duration"] >= 0 for c in cells)
    # the journal's outputs are what the frontend saw
    for cell, seen in zip(cells, recorded):
        assert comparable(cell["outputs"]) == comparable([o for o in seen.outputs]), cell["source"]
    meta = journal["metadata"]["airavata"]["session"]
    assert set(meta["runtimes"]) == {"alpha", "beta"} and meta["runtimes"]["alpha"]["resource"] == "local"

    listing = nb.ok("%session list").text
    assert "two" in listing and "alpha, beta, local" in listing

    exported = tmp_path / "two.ipynb"
    nb.ok(f"%session export two {exported}")
    result = papermill(exported, tmp_path / "out.ipynb", isolate=False)  # same home: records visible
    assert result.status == "ok", result.error
    replay = read_nb(tmp_path / "out.ipynb")
    by_source = {c["metadata"].get("airavata", {}).get("recorded_cell"): c for c in replay["cells"]
                 if c["cell_type"] == "code"}
    for i, cell in enumerate(cells[:7], 1):
        expected = comparable(cell["outputs"])
        if cell["source"].startswith("%switch_runtime"):
            # the export replaces steering magics by explicit routing: their own message is gone
            kind, name, text = expected[0]
            assert text.startswith("cells run")
            rest = text.split("\n", 1)[1]
            expected = ([(kind, name, rest)] if rest else []) + expected[1:]
        got = comparable(by_source[i]["outputs"])
        if cell["source"].startswith("%%run_on alpha,beta"):
            # two runtimes run at once: their labelled lines may arrive in either order
            got, expected = (sorted(line for o in x for line in o[2].splitlines()) for x in (got, expected))
        assert got == expected, cell["source"]
    # the replay requested its own runtimes and stopped them
    records = {json.loads(p.read_text())["name"]: json.loads(p.read_text())
               for p in (magic_home / "runtimes").glob("*.json")}
    assert records["alpha"]["state"] == "stopped" and records["beta"]["state"] == "stopped"


def test_kill_minus_9_loses_no_completed_cell_and_append_resumes(notebook_factory, magic_home):
    nb = notebook_factory()
    nb.ok("%session start crash")
    for i in range(5):
        nb.ok(f"x{i} = {i}\nprint('cell', {i})")
    nb.kc.execute("import time\ntime.sleep(60)")  # in flight when the kernel dies
    time.sleep(0.5)
    os.kill(nb.km.provisioner.process.pid, signal.SIGKILL)
    nb.km.provisioner.process.wait(10)
    path = magic_home / "sessions" / "crash.ipynb"
    raw = json.loads(path.read_text())  # valid JSON as it was left, no repair needed
    nbformat.validate(nbformat.from_dict(raw))
    assert [c["outputs"][0]["text"] for c in raw["cells"]] == [f"cell {i}\n" for i in range(5)]

    nb2 = notebook_factory()
    nb2.ok("%session start crash --append")
    nb2.ok("print('after restart')")
    nb2.ok("%session stop")
    cells = read_nb(path)["cells"]
    assert len(cells) == 6 and cells[-1]["outputs"][0]["text"] == "after restart\n"
    exists = nb2.run("%session start crash")
    assert exists.status == "error" and "exists" in exists.stderr and "--append" in exists.stderr


PLANTED = ["planted-pass-1111", "planted-apikey-2222", "planted-getpass-3333", "planted-remote-4444",
           "AAAAplantedKEYblock5555", "planted-token-6666"]


def test_secrets_never_reach_the_journal_and_replay_asks_for_them(notebook, magic_home, tmp_path, papermill):
    nb = notebook
    nb.ok("%request_runtime gamma --resource local\n%wait_for_runtime gamma")
    nb.ok("%session start secrets")
    nb.ok(f"password = '{PLANTED[0]}'\nprint('using', password)")
    nb.ok(f"print('api_key={PLANTED[1]}')")
    nb.ok("import getpass\npw = getpass.getpass('pw: ')\nprint('got', pw)", stdin=[PLANTED[2]])
    nb.ok("%%run_on gamma\nimport getpass\nrp = getpass.getpass('remote pw: ')\nprint('remote got', rp)",
          stdin=[PLANTED[3]])
    nb.ok("key = '''-----BEGIN OPENSSH PRIVATE KEY-----\n" + PLANTED[4] + "\n-----END OPENSSH PRIVATE KEY-----'''\n"
          "print(key)")
    nb.ok(f"cfg = {{'token': '{PLANTED[5]}'}}\ncfg")
    nb.ok("%stop_runtime gamma")
    nb.ok("%session stop")
    raw = (magic_home / "sessions" / "secrets.ipynb").read_text()
    for planted in PLANTED:
        assert planted not in raw, planted
    assert raw.count("<redacted") >= 8
    nbformat.validate(nbformat.reads(raw, as_version=4))

    exported = tmp_path / "secrets.ipynb"
    nb.ok(f"%session export secrets {exported}")
    text = exported.read_text()
    for planted in PLANTED:
        assert planted not in text
    env = {"AIRAVATA_SECRET_PASSWORD": "env-pass", "AIRAVATA_SECRET_PW": "env-pw", "AIRAVATA_SECRET_RP": "env-rp",
           "AIRAVATA_SECRET_TOKEN": "env-token"}
    result = papermill(exported, tmp_path / "out.ipynb", env_extra=env)
    assert result.status == "ok", result.error
    out = json.dumps(read_nb(tmp_path / "out.ipynb"))
    assert "using env-pass" in out and "got env-pw" in out and "remote got env-rp" in out
    assert "secret 'password': read from $AIRAVATA_SECRET_PASSWORD" in out
    # without the environment, papermill cannot prompt: the replay says which variable to set
    result = papermill(exported, tmp_path / "out2.ipynb", env_extra={})
    assert result.status == "failed" and "set $AIRAVATA_SECRET_" in result.error


def test_session_load_replays_into_this_kernel(notebook_factory):
    nb = notebook_factory()
    nb.ok("%session start s")
    nb.ok("a = 20")
    nb.run("undefined_name")  # failed when recorded: skipped on load
    nb.ok("b = a + 1\nprint('b is', b)")
    nb.ok("%session stop")
    shown = nb.ok("%session show s").text
    assert "undefined_name" in shown and "error" in shown
    nb2 = notebook_factory()
    cell = nb2.ok("%session load s")
    assert "b is 21" in cell.stdout and "skipped" in cell.stderr and "replayed 2 cells" in cell.stdout
    assert nb2.ok("a + b").text.strip() == "41"


def test_bad_session_arguments_are_one_line_usage_errors(notebook, tmp_path):
    nb = notebook
    for line, message in [
        ("%session bogus", "invalid choice"),
        ("%session start", "%session start takes NAME"),
        ("%session start ../etc", "invalid session name"),
        ("%session stop", "no session is recording"),
        ("%session show nothere", "no session named 'nothere'"),
        (f"%session export nothere {tmp_path}/x.ipynb", "no session named 'nothere'"),
        ("%session export a b.txt", "export to a .ipynb path"),
        ("%session list --append", "--append goes with %session start"),
    ]:
        cell = nb.run(line)
        assert cell.status == "error", line
        assert "UsageError" in cell.stderr and message in cell.stderr, (line, cell.stderr)
        assert "Traceback" not in cell.text, line


def test_one_recorder_per_session(notebook_factory):
    a, b = notebook_factory(), notebook_factory()
    a.ok("%session start shared")
    clash = b.run("%session start shared --append")
    assert clash.status == "error" and "being recorded by another kernel" in clash.stderr
    a.ok("x = 1")
    a.ok("%session stop")
    b.ok("%session start shared --append")  # free again once the first kernel stopped
    b.ok("y = 2")
    b.ok("%session stop")
    assert "2" in b.ok("%session list").text


def test_session_load_reads_a_needed_secret_from_the_environment_and_says_so(notebook_factory, magic_home):
    nb = notebook_factory()
    nb.ok("%session start withsecret")
    nb.ok("api_key = 'planted-load-7777'\nprint('key length', len(api_key))")
    nb.ok("%session stop")
    assert "planted-load-7777" not in (magic_home / "sessions" / "withsecret.ipynb").read_text()
    nb2 = notebook_factory(env={"AIRAVATA_SECRET_API_KEY": "from-env-123"})
    cell = nb2.ok("%session load withsecret")
    assert "key length 12" in cell.stdout
    assert "secret 'api_key': read from $AIRAVATA_SECRET_API_KEY" in cell.stderr
    assert "from-env-123" not in cell.text
    nb3 = notebook_factory()
    cell = nb3.run("%session load withsecret", stdin=["typed-secret"])
    assert cell.status == "ok" and "key length 12" in cell.stdout and "secret 'api_key': asked for" in cell.stderr


def test_display_updates_and_clear_output_are_journaled_as_the_frontend_shows_them(notebook, magic_home):
    nb = notebook
    nb.ok("%session start displays")
    nb.ok("from IPython.display import display, clear_output\nh = display('v1', display_id=True)")
    nb.ok("h.update('v2 from a later cell')")
    nb.ok("for i in range(3):\n    clear_output(wait=True)\n    print('progress', i)")
    nb.ok("print('a')\nclear_output()\nprint('b')")
    nb.ok("%session stop")
    cells = read_nb(magic_home / "sessions" / "displays.ipynb")["cells"]
    assert [o["data"]["text/plain"] for o in cells[0]["outputs"]] == ["'v2 from a later cell'"]
    assert cells[1]["outputs"] == []
    assert [o["text"] for o in cells[2]["outputs"]] == ["progress 2\n"]
    assert [o["text"] for o in cells[3]["outputs"]] == ["b\n"]
    nbformat.validate(nbformat.from_dict(read_nb(magic_home / "sessions" / "displays.ipynb")))


def test_a_cell_whose_reply_the_frontend_holds_is_already_journaled(notebook_factory, magic_home):
    """kill -9 right after the third cell's execute_reply: the journal has the third cell, complete.
    The third cell publishes many messages, so a recorder that writes only after its listener
    caught up with the idle status would still be behind when the reply arrives."""
    nb = notebook_factory()
    nb.ok("%session start held")
    nb.ok("a = 1\nprint('one')")
    nb.ok("b = 2\nprint('two')")
    kc = nb.kc
    third = "for i in range(3000):\n    print(i, flush=True)"
    msg_id = kc.execute(third)
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "no execute_reply"
        reply = kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    os.kill(nb.km.provisioner.process.pid, signal.SIGKILL)  # right after the reply, before anything else
    nb.km.provisioner.process.wait(10)
    assert reply["content"]["status"] == "ok"
    raw = json.loads((magic_home / "sessions" / "held.ipynb").read_text())
    sources = ["".join(c["source"]) for c in raw["cells"]]
    assert sources == ["a = 1\nprint('one')", "b = 2\nprint('two')", third]
    text = "".join(o["text"] for o in raw["cells"][2]["outputs"] if o["output_type"] == "stream")
    assert text == "".join(f"{i}\n" for i in range(3000))
