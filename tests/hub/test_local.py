"""The hub on the ``local`` runtime: train, fine-tune, publish, inference, cancel, a killed job."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from airavata_magic.hub import inference, tasks

from .conftest import EXAMPLE, ROOT


def accuracy(predictions: pd.DataFrame, labels_csv) -> float:
    labels = pd.read_csv(labels_csv, dtype={"input": str})
    merged = predictions.merge(labels, on="input")
    assert len(merged) == len(labels) == len(predictions)
    return float((merged["prediction"].astype(int) == merged["label"]).mean())


def test_train_from_scratch_reaches_90_percent(trained):
    t, m = trained["task"], trained["metrics"]
    assert t.state == "FINISHED", t.reason
    assert list(m["epoch"]) == list(range(1, 9))
    assert m["val_accuracy"].iloc[0] < 0.6  # an untrained package: the first epoch starts near chance
    assert m["val_accuracy"].max() > 0.9
    assert t.status["test_accuracy"] > 0.9
    assert t.status["weights"] == "weights.safetensors"
    # the notebook followed it live: a RUNNING task already showed some epochs, not all at the end
    updates = trained["updates"]
    assert any(state == "RUNNING" and 0 < n < 8 for state, n in updates), updates
    assert updates[-1] == ("FINISHED", 8) and [n for _, n in updates] == sorted(n for _, n in updates)


def test_finetune_starts_from_the_trained_weights(trained, digits):
    d = digits["shifted"]
    t = tasks.new("digits-ft", "finetune", str(EXAMPLE), str(d / "train.npz"), str(d / "val.npz"), runtime="local",
                  params={"epochs": 1, "learning_rate": 0.01}, trained_task_id=trained["task"].id)
    t = tasks.wait(t.id, timeout=300)
    assert t.state == "FINISHED", t.reason
    first = tasks.metrics(t)["val_accuracy"].iloc[0]
    scratch_first = trained["metrics"]["val_accuracy"].iloc[0]
    assert first > 0.9 and first > scratch_first + 0.3


def test_publish_task_then_inference_is_accurate(trained, hub, digits, tmp_path):
    entry = tasks.publish(trained["task"].id, name="digits-trained", visibility="public")
    assert entry["weights"] == "weights.safetensors" and entry["source_task"] == trained["task"].id
    found = hub.search_models(name="digits-trained", owner=entry["owner"])
    assert list(found["uuid"]) == [entry["uuid"]]
    d = digits["base"]
    seen = []
    df = inference.run("digits-trained", str(d / "inputs"), str(tmp_path / "out"), batch_size=16,
                       progress=lambda done, total: seen.append((done, total)))
    assert accuracy(df, d / "inputs_labels.csv") > 0.9
    assert seen[-1] == (200, 200) and len(seen) == 13
    results = json.loads((tmp_path / "out" / "Results.json").read_text())
    for key in ("total_cpu_time (seconds)", "total_cpu_memory (MB)", "execution_time (seconds/batch)", "num_batches",
                "batch_size", "device", "throughput_bps", "sample_persec", "cpu_info", "ram_info (GB)"):
        assert key in results, key
    assert results["num_batches"] == 13 and results["batch_size"] == 16 and results["device"] == "cpu"
    on_disk = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"input": str})
    assert list(on_disk.columns[:3]) == ["input", "prediction", "score_0"]
    assert abs(on_disk.filter(like="score_").sum(axis=1) - 1).max() < 1e-4  # probabilities


def test_cancel_ends_killed_and_a_killed_process_is_not_running(hub, digits):
    d = digits["base"]
    long = dict(epochs=10000, batch_size=8)
    a = tasks.new("long-a", "train", str(EXAMPLE), str(d / "train.npz"), str(d / "val.npz"), runtime="local", params=long)
    b = tasks.new("long-b", "train", str(EXAMPLE), str(d / "train.npz"), str(d / "val.npz"), runtime="local", params=long)
    for t in (a, b):
        deadline = time.monotonic() + 120
        while tasks.show(t.id)[0].status.get("state") != "RUNNING":
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.2)
    assert "cancelled task" in tasks.cancel(a.id)
    os.kill(int(b.job_id), signal.SIGKILL)  # dies without a word in its own status.json
    assert tasks.wait(a.id, timeout=60).state == "KILLED"
    died = tasks.wait(b.id, timeout=60)
    assert died.status["state"] == "RUNNING"  # its own file still says so ...
    assert died.state == "FAILED"  # ... but the process is gone: the scheduler's word wins
    table = tasks.list_tasks().set_index("id")
    assert table.loc[a.id, "status"] == "KILLED" and table.loc[b.id, "status"] == "FAILED"
    assert "params.epochs" in table.columns


def test_magics_in_a_notebook(notebook_factory, trained, hub_dir, digits, tmp_path):
    d = digits["base"]
    # the same per-user home as the API calls of this area, so the notebook sees their tasks
    notebook = notebook_factory(env={"AIRAVATA_MAGIC_HOME": os.environ["AIRAVATA_MAGIC_HOME"],
                                     "AIRAVATA_MAGIC_HUB": str(hub_dir)})
    cell = notebook.ok("df = %model list --name digits\nprint(type(df).__name__, sorted(set(df['name'])))")
    assert "DataFrame" in cell.stdout and "digits-trained" in cell.stdout
    # a finetune of a published model that carries weights of its own (replaced by the task's)
    cell = notebook.ok(f"tid = %task new --name nb --type finetune --model digits-trained --train-data {d}/train.npz "
                       f"--val-data {d}/val.npz --runtime local -p epochs 1 --trained-task-id {trained['task'].id}\n"
                       "print('ID', tid)")
    tid = cell.stdout.split("ID ")[1].split()[0]
    assert tid.startswith("TASK")
    cell = notebook.ok(f"m = %task show {tid} --follow --timeout 300\nprint('ROWS', len(m))", timeout=360)
    assert "ROWS 1" in cell.stdout and cell.of_type("display_data")  # the table and the plot
    assert any("image/png" in o.get("data", {}) for o in cell.of_type("display_data"))
    cell = notebook.ok(f"p = %model run digits-trained --mode inference --input-folder {d}/inputs "
                       f"--output {tmp_path}/nb-out --batch-size 50\nprint('N', len(p))")
    assert "N 200" in cell.stdout
    cell = notebook.ok("%model load digits-trained --mode modify --as net\nprint(type(net).__name__)")
    assert "DigitsNet" in cell.stdout
    cell = notebook.run("%model run digits-trained --mode modify --input-folder x")
    assert "UsageError" in cell.stderr and "--mode inference" in cell.stderr


def test_cli(hub_dir, trained, digits, tmp_path):
    env = dict(os.environ, AIRAVATA_MAGIC_HUB=str(hub_dir))
    cli = [sys.executable, "-m", "airavata_magic.cli"]
    out = subprocess.run(cli + ["model", "list", "--name", "digits"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "digits-trained" in out.stdout
    out = subprocess.run(cli + ["task", "show", trained["task"].id], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "FINISHED" in out.stdout and "val_accuracy" in out.stdout
    out = subprocess.run(cli + ["model", "publish", str(tmp_path)], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("error:") and "no model.json" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_datasets_share_the_table_and_feed_tasks_and_runs(hub, trained, digits, tmp_path):
    import shutil

    d = digits["base"]
    splits = tmp_path / "splits"
    splits.mkdir()
    shutil.copy(d / "train.npz", splits / "train.npz")
    about = {"title": "sklearn digits", "domain": "vision", "description": "8x8 digits", "version": "1.0",
             "type": "dataset"}
    (splits / "model.json").write_text(json.dumps(about | {"name": "digits-splits", "files": ["train.npz"]}))
    entry = hub.publish(splits, visibility="public")
    found = hub.search_datasets(name="digits-splits")
    assert list(found.columns) == list(hub.search_models().columns) and list(found["uuid"]) == [entry["uuid"]]
    assert hub.search_models(name="digits-splits").empty  # a dataset is not a model
    t = tasks.new("from-dataset", "train", str(EXAMPLE), "digits-splits", str(d / "val.npz"), runtime="local",
                  params={"epochs": 1})
    assert tasks.wait(t.id, timeout=300).state == "FINISHED"
    inputs = tmp_path / "inputs"
    shutil.copytree(d / "inputs", inputs)
    names = sorted(p.name for p in inputs.iterdir())
    (inputs / "model.json").write_text(json.dumps(about | {"name": "digits-inputs", "files": names}))
    hub.publish(inputs, visibility="private")
    model = tasks.publish(trained["task"].id, name="digits-for-run", visibility="private")
    df = hub.run(model["name"], "digits-inputs", output=str(tmp_path / "run-out"))
    assert accuracy(df, d / "inputs_labels.csv") > 0.9


def test_a_computational_model_loads_as_a_session(hub, hub_dir, notebook_factory, tmp_path):
    import nbformat

    pkg = tmp_path / "sim"
    pkg.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("a toy simulation"), nbformat.v4.new_code_cell("steps = 21"),
                nbformat.v4.new_code_cell("print('simulated', steps * 2)")]
    nbformat.write(nb, pkg / "session.ipynb")
    (pkg / "model.json").write_text(json.dumps({
        "name": "toy-sim", "title": "A toy simulation", "domain": "physics", "description": "two cells",
        "version": "1.0", "type": "model", "kind": "computational", "session": "session.ipynb"}))
    hub.publish(pkg, visibility="public")
    notebook = notebook_factory(env={"AIRAVATA_MAGIC_HOME": os.environ["AIRAVATA_MAGIC_HOME"],
                                     "AIRAVATA_MAGIC_HUB": str(hub_dir)})
    cell = notebook.ok("%model load toy-sim --mode modify")
    assert "session 'toy-sim' loaded" in cell.stdout and "2 cells" in cell.stdout
    cell = notebook.ok("%session load toy-sim")
    assert "simulated 42" in cell.stdout
    (pkg / "session.ipynb").write_text("not a notebook")
    cell = notebook.run(f"%model publish {pkg} --version 2.0")
    assert "is not a readable notebook" in cell.stderr
