"""Fan-out on ``local`` (a detached process pool): an interrupted wait leaves the tasks running,
malformed results are reported by name, status and the run list, nothing-to-retry refused."""
from __future__ import annotations

import pytest

from airavata_magic.errors import InvalidArgument
from airavata_magic.fanout import api

ALG = """import sys, pathlib, pickle, time
inp, out = sys.argv[1], pathlib.Path(sys.argv[2])
text = open(inp).read()
if "slow" in text:
    time.sleep(1.5)
import numpy as np, pandas as pd
np.save(out / "filtered.npy", np.zeros(3))
if "bad" in text:
    (out / "info_df.pkl").write_bytes(b"not a pickle")
else:
    pd.DataFrame({"value": [len(text)]}).to_pickle(out / "info_df.pkl")
with open(out / "header.pkl", "wb") as f:
    pickle.dump({"name": inp}, f)
"""


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name, text in (("a.txt", "slow"), ("b.txt", "slow"), ("c.txt", "bad")):
        (d / name).write_text(text)
    alg = tmp_path / "alg.py"
    alg.write_text(ALG)
    return d, alg


def test_interrupted_wait_leaves_tasks_running_then_gather_reports_the_malformed_one(files, tmp_path):
    d, alg = files
    seen = []

    def interrupt(run, statuses):
        seen.append(run.run_id)
        raise KeyboardInterrupt  # as Ctrl-C during the wait

    with pytest.raises(KeyboardInterrupt):
        api.run(str(alg), str(d / "*.txt"), resource="local", parallel=3, output=str(tmp_path / "o"), progress=interrupt)
    run_id = seen[0]
    res = api.gather(run_id, wait=True, timeout=120)  # the pool went on without us
    assert sorted(res.arrays) == [str(d / "a.txt"), str(d / "b.txt")]
    assert list(res.failed["input"]) == [str(d / "c.txt")]
    assert res.failed["reason"].iloc[0].startswith("malformed results: info_df.pkl cannot be read")
    assert list(res.hits["value"]) == [4, 4] and list(res.hits["task"]) == [0, 1]
    st = api.status(run_id)
    assert list(st["state"]) == ["done", "done", "done"]  # the task itself exited 0
    assert run_id in set(api.runs()["run_id"])


def test_retry_with_nothing_failed_is_refused(files, tmp_path):
    d, alg = files
    (d / "c.txt").write_text("fine")
    res = api.run(str(alg), str(d / "*.txt"), resource="local", parallel=3, output=str(tmp_path / "o"), timeout=120)
    assert res.ok
    with pytest.raises(InvalidArgument, match="no failed task"):
        api.retry(res.run_id)


def test_inputs_through_a_storage_name_of_the_profile(files, tmp_path):
    d, alg = files
    (d / "c.txt").write_text("fine")
    prof = tmp_path / "cybershuttle.yml"
    prof.write_text(f"storage:\n  lab_storage: {{location: {d}}}\n")
    res = api.run(str(alg), "lab_storage:*.txt", resource="local", parallel=2, output=str(tmp_path / "o"),
                  file=str(prof), timeout=120)
    assert sorted(res.arrays) == sorted(str(p) for p in d.glob("*.txt"))
    with pytest.raises(InvalidArgument, match="matches no file"):
        api.run(str(alg), "lab_storage:*.csv", resource="local", file=str(prof))


def test_a_list_of_inputs_runs_in_the_given_order(files, tmp_path):
    d, alg = files
    (d / "c.txt").write_text("fine")
    res = api.run(str(alg), [str(d / "c.txt"), str(d / "a.txt")], resource="local", output=str(tmp_path / "o"),
                  timeout=120)
    assert list(dict.fromkeys(res.hits["input"])) == [str(d / "c.txt"), str(d / "a.txt")]
    assert list(res.hits["task"]) == [0, 1]


def test_api_names_stay_functions_after_every_submodule_is_imported():
    """A submodule import sets a package attribute: no API name may equal a submodule's name."""
    import importlib
    import pkgutil

    import airavata_magic as am
    import airavata_magic.fanout as fo

    for info in pkgutil.iter_modules(fo.__path__):
        importlib.import_module(f"airavata_magic.fanout.{info.name}")
    for name in fo.__all__:
        assert not isinstance(getattr(fo, name), type(fo)), f"am.fanout.{name} is a module"
    assert am.fanout.gather is fo.api.gather and am.fanout.scale_run is fo.scale.scale_run
