"""``%fanout`` / ``%scale_run`` through a real notebook kernel and ``airavata-magic fanout|scale``
as a real process: what a user types and sees, and bad input refused in one line with nothing
submitted."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ALGORITHM, EXAMPLES


@pytest.fixture
def two_inputs(observations, tmp_path):
    obs_dir, truth = observations
    d = tmp_path / "inputs"
    d.mkdir()
    for f in sorted(obs_dir.glob("obs-*.h5"))[:2]:
        shutil.copy(f, d / f.name)
    return d


def _squeue_user(slurm_testbed) -> str:
    return subprocess.run(["squeue", "-h", "-u", slurm_testbed.user, "-o", "%j"], capture_output=True, text=True).stdout


@pytest.mark.slurm
def test_fanout_magic_on_slurm_shows_one_live_table_and_returns_the_result(notebook_factory, profile, two_inputs,
                                                                          magic_home, slurm_testbed):
    nb = notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(profile)})
    cell = nb.ok(f"res = %fanout {ALGORITHM} --inputs '{two_inputs}/*.h5' --resource hpc --parallel 2 --output out\n"
                 "print(res.run_id, len(res.arrays), len(res.failed), sorted(set(res.hits.columns)))")
    shown = cell.of_type("display_data")
    updates = cell.of_type("update_display_data")
    assert len(shown) == 1 and updates  # one display, updated in place
    ids = {o["transient"]["display_id"] for o in shown + updates if "transient" in o}
    assert len(ids) == 1
    assert "done: 2" in updates[-1]["data"]["text/plain"]
    run_id, n_arrays, n_failed, *_ = cell.stdout.split(maxsplit=3)
    assert (n_arrays, n_failed) == ("2", "0")
    # the magic is the API: the run it recorded is the one the API reads back
    rec = json.loads((magic_home / "fanout" / f"{run_id}.json").read_text())
    assert rec["kind"] == "slurm" and len(rec["submissions"]) == 1 and len(rec["inputs"]) == 2
    assert oct((magic_home / "fanout" / f"{run_id}.json").stat().st_mode & 0o777) == "0o600"
    again = nb.ok(f"g = %fanout gather {run_id}\nprint(len(g.hits) == len(res.hits), g.failed.empty)")
    assert again.stdout.split() == ["True", "True"]


@pytest.mark.slurm
@pytest.mark.parametrize("args, says", [
    ("{alg} --inputs '{d}/*.nothing' --resource hpc", "matches no file"),
    ("hpc:/nonexistent/alg.py --inputs '{d}/*.h5' --resource hpc", "does not exist on hpc"),
    ("{alg} --inputs '{d}/*.h5' --resource hpc --output /etc/passwd/out", "cannot create it"),
    ("{alg} --inputs '{d}/*.h5' --resource hpc --parallel 0", "at least 1"),
    ("{alg} --inputs '{d}/*.h5' --resource hpc --runtime hpc_cpu", "exactly one of"),
    ("{alg} --inputs '{d}/*.h5' --resource ws", "fan-out runs on slurm, kubernetes and local"),
    ("gather fo-nope", "not a fan-out run id"),
])
def test_bad_fanout_input_is_one_line_and_submits_nothing(notebook_factory, profile, two_inputs, slurm_testbed,
                                                          magic_home, args, says):
    nb = notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(profile)})
    before = _squeue_user(slurm_testbed).count("fanout-")
    cell = nb.run("%fanout " + args.format(alg=ALGORITHM, d=two_inputs))
    lines = [ln for ln in cell.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("UsageError:") and says in lines[0], cell.stderr
    assert "Traceback" not in cell.text
    assert not list((magic_home / "fanout").glob("fo-*.json")) if (magic_home / "fanout").exists() else True
    assert _squeue_user(slurm_testbed).count("fanout-") == before


def test_no_wait_then_gather_and_scale_run_magic_on_local(notebook_factory, two_inputs, tmp_path):
    nb = notebook_factory()
    cell = nb.ok(f"r = %fanout {ALGORITHM} --inputs '{two_inputs}/*.h5' --resource local --no-wait\n"
                 "print(r.run_id, len(r.pending))")
    run_id, pending = cell.stdout.split()
    assert pending == "2"
    got = nb.ok(f"g = %fanout gather {run_id}\nprint(len(g.arrays), len(g.failed), len(g.pending))", timeout=120)
    assert got.stdout.split() == ["2", "0", "0"]
    cell = nb.ok(f"t = %scale_run {EXAMPLES / 'scale_infer.py'} --world-sizes 1,2 --resource local\n"
                 "print(list(t.columns)); print(list(t.samples))", timeout=240)
    assert "image/png" in str([o.get("data", {}).keys() for o in cell.of_type("display_data")])
    assert "[1024, 1024]" in cell.stdout and "'efficiency'" in cell.stdout


def test_cli_fanout_and_its_errors(two_inputs, tmp_path):
    env = dict(os.environ)
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    cli = [sys.executable, "-m", "airavata_magic.cli", "fanout"]
    ok = subprocess.run([*cli, "run", str(ALGORITHM), "--inputs", f"{two_inputs}/*.h5", "--resource", "local",
                         "--output", str(tmp_path / "o"), "--csv", str(tmp_path / "hits.csv")],
                        capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "2 task(s) gathered" in ok.stderr and "task" in ok.stderr  # summary + tqdm bar on stderr
    import pandas as pd

    hits = pd.read_csv(tmp_path / "hits.csv")
    assert set(hits["input"]) == {str(p) for p in two_inputs.glob("*.h5")}
    bad = subprocess.run([*cli, "run", str(ALGORITHM), "--inputs", f"{tmp_path}/none/*.h5", "--resource", "local"],
                         capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1


def test_cli_scale_writes_the_table_and_the_plot(tmp_path):
    env = dict(os.environ)
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    r = subprocess.run([sys.executable, "-m", "airavata_magic.cli", "scale", "run", str(EXAMPLES / "scale_infer.py"),
                        "--world-sizes", "1,2", "--resource", "local", "--csv", str(tmp_path / "t.csv"),
                        "--plot", str(tmp_path / "t.png")], capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import pandas as pd

    t = pd.read_csv(tmp_path / "t.csv")
    assert list(t["world_size"]) == [1, 2] and list(t["samples"]) == [1024, 1024]
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run([sys.executable, "-m", "airavata_magic.cli", "scale", "run", str(EXAMPLES / "scale_infer.py"),
                          "--world-sizes", "0", "--resource", "local"], capture_output=True, text=True, env=env,
                         timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == ["error: each world size must be at least 1, got 0"]


SLOW_ALG = """import sys, time, pickle, pathlib
time.sleep(10)
import numpy as np, pandas as pd
out = pathlib.Path(sys.argv[2])
np.save(out / "filtered.npy", np.zeros(2))
pd.DataFrame({"x": [1]}).to_pickle(out / "info_df.pkl")
pickle.dump({}, open(out / "header.pkl", "wb"))
"""


@pytest.mark.slurm
def test_interrupting_the_wait_leaves_the_array_running_and_gather_finds_it(notebook_factory, profile, two_inputs,
                                                                             tmp_path, slurm_testbed):
    alg = tmp_path / "slow.py"
    alg.write_text(SLOW_ALG)
    nb = notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(profile)})
    cell = nb.run(f"r = %fanout {alg} --inputs '{two_inputs}/*.h5' --resource hpc --parallel 2", interrupt_after=5,
                  timeout=60)
    assert cell.status == "ok", cell.text  # Ctrl-C ends the wait, not the notebook cell with a traceback
    line = next(ln for ln in cell.stdout.splitlines() if ln.startswith("interrupted"))
    run_id = line.split("%fanout gather ")[1].split()[0]
    names = _squeue_user(slurm_testbed)
    assert f"fanout-{run_id}" in names  # the array still runs
    got = nb.ok(f"g = %fanout gather {run_id}\nprint(len(g.arrays), len(g.failed))", timeout=120)
    assert got.stdout.split() == ["2", "0"]
