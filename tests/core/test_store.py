"""``RuntimeStore`` on a real directory: records, unreadable ones, holders, privacy."""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from airavata_magic.errors import RuntimeNotFound
from airavata_magic.runtime import BrokenRecord, Runtime, RuntimeSpec, RuntimeState, RuntimeStore


@pytest.fixture
def store(tmp_path) -> RuntimeStore:
    return RuntimeStore(tmp_path)


def test_a_record_round_trips_and_is_private(store):
    rt = Runtime(name="a b/ü", resource="hpc", kind="slurm", spec=RuntimeSpec(cpus=2, memory=512),
                 state=RuntimeState.QUEUED, job_id="42", backend_state={"run_dir": "/x"})
    store.save(rt)
    assert store.load("a b/ü") == rt
    path = store.record_path("a b/ü")
    assert path.parent == store.root and "/" not in path.name[:-5]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    assert [r.name for r in store.all()] == ["a b/ü"]


def test_records_of_older_versions_are_read(store):
    store.root.joinpath("old.json").write_text(json.dumps({
        "name": "old", "resource": "local", "kind": "local", "state": "ready", "owner_pid": 123,
        "backend_state": {"pid": 5}}))
    rt = store.load("old")
    assert rt.state == RuntimeState.READY and rt.backend_state == {"pid": 5}
    assert "owner_pid" not in rt.to_json()


def test_unreadable_records_say_why_and_are_listed(store):
    store.root.joinpath("junk.json").write_text("{")
    store.root.joinpath("odd.json").write_text(json.dumps({"name": "odd", "resource": "r", "kind": "slurm",
                                                           "state": "weird", "job_id": "7"}))
    with pytest.raises(RuntimeNotFound, match="unreadable.*%stop_runtime junk removes it"):
        store.load("junk")
    items = {i.name: i for i in store.all_records()}
    assert isinstance(items["junk"], BrokenRecord) and items["junk"].raw == {}
    assert isinstance(items["odd"], BrokenRecord) and items["odd"].raw["job_id"] == "7"
    assert "weird" in items["odd"].reason
    assert list(store.all()) == []
    with pytest.raises(RuntimeNotFound, match="no runtime named 'none'"):
        store.load("none")


def test_holders_are_live_processes_only(store):
    store.save(Runtime(name="r", resource="local", kind="local"))
    store.hold("r")
    other = subprocess.Popen(["sleep", "60"])
    try:
        store.hold("r", other.pid)
        assert sorted(store.holders("r")) == sorted([os.getpid(), other.pid])
    finally:
        other.kill()
        other.wait()
    assert store.holders("r") == [os.getpid()]  # the ended one is pruned
    assert not (store.holders_dir("r") / str(other.pid)).exists()
    store.release("r")
    assert store.holders("r") == []


def test_forget_removes_record_and_private_directory(store):
    store.save(Runtime(name="r", resource="local", kind="local"))
    (store.runtime_dir("r") / "kernel.json").write_text("{}")
    store.hold("r")
    store.forget("r")
    assert not store.exists("r") and not (store.root / "r.d").exists()
