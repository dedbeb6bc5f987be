"""One dataset concept: a dataset registered with ``%dataset register`` (the storage module's
registry) is listed with the hub's columns and used by name by training tasks and ``Hub.run``,
prepared the storage way (a read-only cache entry keyed by content; a second use moves nothing)."""
from __future__ import annotations

import os
import shutil
import stat

import numpy as np

from airavata_magic.hub import tasks
from airavata_magic.storage import dataset

from .conftest import EXAMPLE, public_tmp
from .test_local import accuracy


def _cache_entries(home) -> set[str]:
    cache = home / "dataset-cache"
    return {p.name for p in cache.iterdir() if not p.name.startswith(".")} if cache.is_dir() else set()


def test_a_dataset_registered_in_the_notebook_trains_a_task(notebook_factory, hub, hub_dir, hub_home, digits):
    d = digits["base"]
    lab = public_tmp("hub-lab-")
    shutil.copy(d / "train.npz", lab / "train.npz")
    notebook = notebook_factory(env={"AIRAVATA_MAGIC_HOME": str(hub_home), "AIRAVATA_MAGIC_HUB": str(hub_dir)})
    try:
        notebook.ok(f"%storage register --name reglab --location {lab}")
        notebook.ok("%dataset register --name reg-train --location reglab:train.npz --domain vision "
                    "--title 'digits, training split' --version 2.0")
        cell = notebook.ok(f"tid = %task new --name from-registered --type train --model {EXAMPLE} "
                           f"--train-data reg-train --val-data {d}/val.npz --runtime local -p epochs 1\n"
                           "print('ID', tid)")
        tid = cell.stdout.split("ID ")[1].split()[0]
        done = tasks.wait(tid, timeout=300)
        assert done.state == "FINISHED", done.reason
        assert done.data["train"] == "reg-train"
        # The task trained on the registered file's bytes, taken from the storage module's cache.
        staged = np.load(tasks.staging(tid) / "data" / "train.npz")
        with np.load(d / "train.npz") as original:
            assert np.array_equal(staged["X"], original["X"]) and np.array_equal(staged["y"], original["y"])
        (entry,) = [e for e in _cache_entries(hub_home) if e.startswith("reg_train-")]
        cached = hub_home / "dataset-cache" / entry / "data" / "train.npz"
        assert cached.is_file() and not stat.S_IMODE(cached.stat().st_mode) & 0o222  # read-only
        # Both listings, from the notebook: the same columns, and the registered dataset in both.
        notebook.ok("a = %dataset list\nb = %model list --datasets")
        cell = notebook.ok("print(list(a.columns) == list(b.columns), 'reg-train' in set(a.name) & set(b.name))")
        assert cell.stdout.strip() == "True True"
    finally:
        shutil.rmtree(lab, ignore_errors=True)


def test_hub_run_takes_a_registered_folder_of_inputs(hub, trained, digits, hub_home, tmp_path):
    from airavata_magic import storage

    d = digits["base"]
    shelf = tmp_path / "shelf"
    shutil.copytree(d / "inputs", shelf / "inputs")
    storage.register("regshelf", str(shelf))
    dataset.register("reg-inputs", "regshelf:inputs", domain="vision", description="200 digits as .npy")
    model = tasks.publish(trained["task"].id, name="digits-for-registered", visibility="private")
    df = hub.run(model["name"], "reg-inputs", output=str(tmp_path / "out"))
    assert accuracy(df, d / "inputs_labels.csv") > 0.9
    before = _cache_entries(hub_home)
    assert any(e.startswith("reg_inputs-") for e in before)
    mtime = os.stat(hub_home / "dataset-cache").st_mtime_ns
    again = hub.run(model["name"], "reg-inputs", output=str(tmp_path / "out2"))
    assert len(again) == len(df)
    assert _cache_entries(hub_home) == before and os.stat(hub_home / "dataset-cache").st_mtime_ns == mtime  # a hit


def test_the_listings_have_the_same_columns_and_rows(hub, hub_home, tmp_path):
    from airavata_magic import storage

    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "x.npz").write_bytes(b"")
    storage.register("regcols", str(tmp_path / "store"))
    ds = dataset.register("reg-columns", "regcols:x.npz", title="Columns", domain="astro", version="3.1",
                          description="one file")
    mine = dataset.list_datasets().set_index("name").loc["reg-columns"]
    found = hub.search_datasets(name="reg-columns", domain="astro", version="3.1")
    assert list(dataset.list_datasets().columns) == list(found.columns) == list(hub.search_models().columns)
    for col in ("uuid", "name", "title", "owner", "domain", "description", "version", "publication_date", "type",
                "location"):
        assert col in found.columns, col
    (row,) = found.to_dict("records")
    assert row == {"name": "reg-columns", **mine.to_dict()}
    assert row["uuid"] == ds.uuid and row["type"] == "dataset" and row["location"] == "regcols:x.npz"
    assert row["visibility"] == "private" and row["owner"] == ds.owner and row["publication_date"]
    assert hub.search_datasets(name="reg-columns", domain="vision").empty
    assert hub.search_models(name="reg-columns").empty  # a dataset is not a model


def test_an_unknown_name_without_a_hub_is_one_line(digits, monkeypatch):
    from airavata_magic.errors import InvalidArgument
    from airavata_magic.hub import resolve

    monkeypatch.delenv("AIRAVATA_MAGIC_HUB")
    try:
        resolve.data_file("reg-nothing", "--train-data", None)
    except InvalidArgument as e:
        assert str(e) == ("no dataset 'reg-nothing': not a file, not registered (%dataset list), and no model hub "
                          "is configured")
    else:
        raise AssertionError("an unknown dataset name was accepted")
