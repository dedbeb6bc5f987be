"""Bad input to the hub and to tasks: one line each, and nothing half-published."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from airavata_magic.errors import AiravataError, ProfileError
from airavata_magic.hub import tasks
from airavata_magic.profile import parse_profile

from .conftest import EXAMPLE


def package_copy(tmp_path: Path, **changes) -> Path:
    folder = tmp_path / "pkg"
    shutil.copytree(EXAMPLE, folder)
    meta = json.loads((folder / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(AiravataError) as e:
        fn(*args, **kw)
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def hub_files(hub_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(hub_dir)) for p in hub_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize("changes, expected", [
    ({"name": None}, "missing field 'name'"),
    ({"framework": "tensorflow"}, "field 'framework'"),
    ({"inputs": "8x8 image"}, "field 'inputs' must be an object"),
    ({"version": "one point o"}, "field 'version'"),
    ({"colour": "blue"}, "unknown field 'colour'"),
    ({"visibility": "shared"}, "needs either 'group'"),
    ({"visibility": "shared", "shared_with": ["nosuchuser1"]}, "no Unix user 'nosuchuser1'"),
    ({"visibility": "shared", "group": "nosuchgroup1"}, "no Unix group 'nosuchgroup1'"),
    ({"entry": "../escape.py"}, "field 'entry' must name a file"),
    ({"entry": "missing.py"}, "'missing.py' named in model.json does not exist"),
    ({"weights": "weights.safetensors"}, "'weights.safetensors' named in model.json does not exist"),
])
def test_bad_model_json_is_one_line_and_publishes_nothing(hub, hub_dir, tmp_path, changes, expected):
    before = hub_files(hub_dir)
    folder = package_copy(tmp_path, **changes)
    assert expected in one_line_error(hub.publish, folder)
    assert hub_files(hub_dir) == before
    assert not list(hub_dir.rglob(".publishing-*"))


def test_missing_model_json_invalid_json_and_no_entry_function(hub, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no model.json" in one_line_error(hub.publish, empty)
    folder = package_copy(tmp_path)
    (folder / "model.json").write_text('{"name": "x",')
    assert "not valid JSON (line 1" in one_line_error(hub.publish, folder)
    folder = package_copy(tmp_path / "b")
    (folder / "model.py").write_text("def predict(batch):\n    return batch\n")
    assert "defines no function load(mode, device)" in one_line_error(hub.publish, folder)
    (folder / "model.py").write_text("def load(mode, device)\n")
    assert "not valid Python" in one_line_error(hub.publish, folder)


def test_same_version_twice_is_refused(hub, tmp_path):
    folder = package_copy(tmp_path, name="twice", version="1.0")
    hub.publish(folder)
    assert "already published" in one_line_error(hub.publish, folder)
    assert len(hub.search_models(name="twice")) == 1


def test_search_of_nothing_is_an_empty_dataframe(hub):
    df = hub.search_models(name="no-such-model-anywhere")
    assert df.empty and list(df.columns)[:3] == ["name", "version", "owner"]
    assert "no model 'no-such'" in one_line_error(hub.get, "no-such")


def test_task_arguments(hub, digits, tmp_path):
    d = digits["base"]
    args = ("t", "train", str(EXAMPLE), str(d / "train.npz"), str(d / "val.npz"))
    assert "unknown training parameter 'lr'" in one_line_error(tasks.new, *args, runtime="local", params={"lr": 1})
    assert "epochs must be a positive int" in one_line_error(tasks.new, *args, runtime="local", params={"epochs": "x"})
    assert "epochs must be a positive int" in one_line_error(tasks.new, *args, runtime="local", params={"epochs": 0})
    assert "--type must be train or finetune" in one_line_error(tasks.new, "t", "fit", *args[2:], runtime="local")
    assert "needs --trained-task-id" in one_line_error(tasks.new, "t", "finetune", *args[2:], runtime="local")
    assert "no task TASK2000" in one_line_error(tasks.new, "t", "finetune", *args[2:], runtime="local",
                                                trained_task_id="TASK2000010100000000")
    assert "is not a task id" in one_line_error(tasks.new, "t", "finetune", *args[2:], runtime="local",
                                                trained_task_id="yesterday's")
    assert "neither a runtime" in one_line_error(tasks.new, *args, runtime="nowhere")
    bad = tmp_path / "bad.npz"
    import numpy as np

    np.savez(bad, images=np.zeros((3, 8, 8)))
    assert "needs arrays X and y" in one_line_error(tasks.new, "t", "train", str(EXAMPLE), str(bad), str(d / "val.npz"),
                                                    runtime="local")
    assert "no dataset 'nope.npz'" in one_line_error(tasks.new, "t", "train", str(EXAMPLE), "nope.npz",
                                                     str(d / "val.npz"), runtime="local")


def test_finetune_from_a_failed_task_is_refused(hub, digits, tmp_path):
    d = digits["base"]
    broken = package_copy(tmp_path, name="broken")
    (broken / "model.py").write_text("def load(mode, device):\n    raise RuntimeError('no network here')\n")
    t = tasks.new("broken", "train", str(broken), str(d / "train.npz"), str(d / "val.npz"), runtime="local")
    t = tasks.wait(t.id, timeout=120)
    assert t.state == "FAILED" and "no network here" in t.reason
    assert "RuntimeError: no network here" in tasks.log_tail(t)  # the traceback, for the user to see
    msg = one_line_error(tasks.new, "ft", "finetune", str(EXAMPLE), str(d / "train.npz"), str(d / "val.npz"),
                         runtime="local", trained_task_id=t.id)
    assert f"task {t.id} is FAILED" in msg


def test_empty_input_folder(hub, tmp_path):
    from airavata_magic.hub import inference

    (tmp_path / "in").mkdir()
    assert "has no .npy files" in one_line_error(inference.run, str(EXAMPLE), str(tmp_path / "in"))
    assert "does not exist" in one_line_error(inference.run, str(EXAMPLE), str(tmp_path / "nope"))
    assert "--batch-size" in one_line_error(inference.run, str(EXAMPLE), str(tmp_path / "in"), batch_size=0)


def test_profile_hub_section():
    prof = parse_profile("storage:\n  lab: {location: /srv/lab}\nhub: {storage: lab}\n", "p.yml")
    assert prof.hub == {"storage": "lab"}
    with pytest.raises(ProfileError, match=r"p.yml:3 key 'storage'.*not in the storage: section"):
        parse_profile("storage:\n  lab: {location: /srv/lab}\nhub: {storage: nas}\n", "p.yml")
    with pytest.raises(ProfileError, match="hub must be exactly"):
        parse_profile("hub: {path: /srv}\n", "p.yml")
