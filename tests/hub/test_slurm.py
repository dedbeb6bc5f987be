"""The hub on the real loopback Slurm test bed: tasks as sbatch jobs, inference on a Slurm runtime.

The jobs run as the test bed's user with an interpreter that shares this checkout's torch
(``shared_python``); data and weights travel over the resource's SSH connection.
"""
from __future__ import annotations

import subprocess
import time

import pandas as pd
import pytest

from airavata_magic.hub import inference, tasks

from .conftest import EXAMPLE
from .test_local import accuracy

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def hub_profile(slurm_testbed, shared_python, tmp_path_factory) -> str:
    """The test bed's profile with the shared interpreter and a preset for hub work."""
    text = slurm_testbed.profile.read_text().replace(slurm_testbed.python, str(shared_python))
    text += "  hub_cpu: {resource: hpc, cpus: 1, memory: 1G, walltime: 20}\n"
    path = tmp_path_factory.mktemp("hub-profile") / "cybershuttle.yml"
    path.write_text(text)
    return str(path)


def test_train_and_finetune_as_slurm_jobs(hub_profile, trained, digits, slurm_testbed):
    base, shifted = digits["base"], digits["shifted"]
    scratch = tasks.new("slurm-train", "train", str(EXAMPLE), str(base / "train.npz"), str(base / "val.npz"),
                        runtime="hub_cpu", file=hub_profile, params={"epochs": 3})
    tuned = tasks.new("slurm-ft", "finetune", str(EXAMPLE), str(shifted / "train.npz"), str(shifted / "val.npz"),
                      test_data=str(shifted / "test.npz"), runtime="hub_cpu", file=hub_profile,
                      params={"epochs": 1, "learning_rate": 0.01}, trained_task_id=trained["task"].id)
    for t in (scratch, tuned):
        assert t.kind == "slurm" and t.job_id.isdigit() and t.state == "SCHEDULED"
        assert t.task_dir.startswith(f"/home/{slurm_testbed.user}/")
    scratch, tuned = tasks.wait(scratch.id, timeout=400), tasks.wait(tuned.id, timeout=400)
    assert scratch.state == "FINISHED", scratch.reason
    assert tuned.state == "FINISHED", tuned.reason
    assert scratch.status["host"] and list(tasks.metrics(scratch)["epoch"]) == [1, 2, 3]
    first = tasks.metrics(tuned)["val_accuracy"].iloc[0]
    assert first > 0.9  # started from the trained weights (uploaded from the local task) ...
    assert tasks.metrics(scratch)["val_accuracy"].iloc[0] < 0.6  # ... where a fresh start is near chance
    assert tuned.status["test_accuracy"] > 0.9
    # the job really ran under Slurm: sacct/squeue or scontrol knows it
    out = subprocess.run(slurm_testbed.ssh_argv("scontrol", "show", "job", tuned.job_id), capture_output=True, text=True)
    assert f"JobId={tuned.job_id}" in out.stdout or "Invalid job id" in out.stderr


def test_a_job_cancelled_outside_is_killed(hub_profile, digits, slurm_testbed):
    base = digits["base"]
    t = tasks.new("slurm-long", "train", str(EXAMPLE), str(base / "train.npz"), str(base / "val.npz"),
                  runtime="hub_cpu", file=hub_profile, params={"epochs": 10000, "batch_size": 8})
    deadline = time.monotonic() + 300
    while tasks.show(t.id)[0].status.get("state") != "RUNNING":
        assert time.monotonic() < deadline, f"task never started: {tasks.show(t.id)[0].reason}"
        time.sleep(0.3)
    subprocess.run(slurm_testbed.ssh_argv("scancel", t.job_id), check=True, timeout=60)
    done = tasks.wait(t.id, timeout=120)
    assert done.state == "KILLED", (done.state, done.reason)
    assert done.status["state"] == "RUNNING"  # its own file never got to say otherwise


def test_inference_and_modify_on_a_slurm_runtime(hub_profile, trained, digits, hub):
    from airavata_magic import get_manager
    from airavata_magic.hub.inference import _Quiet

    entry = tasks.publish(trained["task"].id, name="digits-for-slurm", visibility="public")
    manager = get_manager()
    manager.request("hub_cpu", file=hub_profile)
    try:
        manager.wait("hub_cpu", timeout=300)
        base = digits["base"]
        df = inference.run(entry["name"], str(base / "inputs"), "preds", runtime="hub_cpu", batch_size=64)
        assert isinstance(df, pd.DataFrame) and len(df) == 200
        assert accuracy(df, base / "inputs_labels.csv") > 0.9
        results = df.attrs["results"]
        assert results["num_batches"] == 4 and results["device"] == "cpu"
        print(inference.load_modify(entry["name"], runtime="hub_cpu", var="net"))
        out = manager.run(["hub_cpu"], "assert type(net).__name__ == 'DigitsNet', type(net)", _Quiet())
        assert out[0].status == "ok", out[0].error
    finally:
        manager.stop("hub_cpu")


def test_a_hub_on_sftp_storage(hub_profile, slurm_testbed, tmp_path, digits):
    """The hub in an ``sftp://`` location, through the resource's verified SSH connection."""
    from airavata_magic.hub import Hub
    from airavata_magic.profile import load_profile

    remote = f"/home/{slurm_testbed.user}/hub-{tmp_path.name}"
    subprocess.run(slurm_testbed.ssh_argv("mkdir", "-p", remote), check=True, timeout=60)
    profile = tmp_path / "cybershuttle.yml"
    profile.write_text(open(hub_profile).read() + "storage:\n  remotehub: {location: "
                       f"'sftp://{slurm_testbed.user}@{slurm_testbed.host}:{slurm_testbed.port}{remote}'}}\n"
                       "hub: {storage: remotehub}\n")
    assert load_profile(str(profile)).hub == {"storage": "remotehub"}
    hub = Hub.from_profile(str(profile))
    entry = hub.publish(EXAMPLE, {"name": "digits-remote"}, visibility="private")
    out = subprocess.run(slurm_testbed.ssh_argv("stat", "-c", "%a", f"{remote}/models/{hub.user}/.private"),
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "700"
    assert list(hub.search_models(name="digits-remote")["uuid"]) == [entry["uuid"]]
    local = hub.fetch("digits-remote")
    assert (local / "model.py").read_bytes() == (EXAMPLE / "model.py").read_bytes()
    base = digits["base"]
    df = inference.run("digits-remote", str(base / "inputs"), str(tmp_path / "out"), file=str(profile))
    assert len(df) == 200  # untrained weights: only the shape is checked here
    subprocess.run(slurm_testbed.ssh_argv("rm", "-rf", remote), timeout=60)


def test_hub_run_requests_a_sized_runtime_and_stops_it(hub_profile, trained, digits, hub):
    """AstroHub's run(model, data, cpu, gpu, node): a runtime of that size for one run."""
    from airavata_magic import get_manager

    entry = tasks.publish(trained["task"].id, name="digits-astro", visibility="public")
    df = hub.run(entry["name"], str(digits["base"] / "inputs"), cpu=1, runtime="hub_cpu", output="astro-out",
                 file=hub_profile)
    assert accuracy(df, digits["base"] / "inputs_labels.csv") > 0.9
    runs = [rt for rt in get_manager().store.all() if rt.name.startswith("hubrun-")]
    assert runs and all(rt.state.terminal for rt in runs) and runs[-1].spec.cpus == 1


def test_data_already_on_the_cluster_is_linked_not_copied(hub_profile, digits, slurm_testbed):
    from airavata_magic.errors import AiravataError

    base = digits["base"]
    home = f"/home/{slurm_testbed.user}"
    r = slurm_testbed.as_user(f"mkdir -p {home}/hubdata && cp {base}/train.npz {home}/hubdata/train.npz")
    assert r.returncode == 0, r.stderr
    t = tasks.new("on-cluster", "train", str(EXAMPLE), f"hpc:{home}/hubdata/train.npz", str(base / "val.npz"),
                  runtime="hub_cpu", file=hub_profile, params={"epochs": 1})
    assert not (tasks.staging(t.id) / "data" / "train.npz").exists()  # never came through here
    done = tasks.wait(t.id, timeout=300)
    assert done.state == "FINISHED", (done.reason, tasks.log_tail(done))
    link = slurm_testbed.as_user(f"readlink {done.task_dir}/data/train.npz").stdout.strip()
    assert link == f"{home}/hubdata/train.npz"
    listing = f"ls {home}/.airavata-magic/tasks"
    before = slurm_testbed.as_user(listing).stdout.split()
    with pytest.raises(AiravataError, match="not a readable file on hpc") as e:
        tasks.new("missing", "train", str(EXAMPLE), f"hpc:{home}/hubdata/nope.npz", str(base / "val.npz"),
                  runtime="hub_cpu", file=hub_profile)
    assert "\n" not in str(e.value)
    assert slurm_testbed.as_user(listing).stdout.split() == before  # nothing half-made left there
    with pytest.raises(AiravataError, match="is on hpc, but the task runs on local"):
        tasks.new("elsewhere", "train", str(EXAMPLE), f"hpc:{home}/hubdata/train.npz", str(base / "val.npz"),
                  runtime="local")


def test_a_hub_on_the_storage_modules_sftp(slurm_testbed, tmp_path):
    """The filesystem the storage module gives for ``sftp://`` (sshfs over asyncssh, host keys
    checked): permissions and the atomic rename go through its own SFTP client."""
    from sshfs import SSHFileSystem

    from airavata_magic.hub import Hub

    remote = f"/home/{slurm_testbed.user}/hub-sshfs-{tmp_path.name}"
    subprocess.run(slurm_testbed.ssh_argv("mkdir", "-p", remote), check=True, timeout=60)
    fs = SSHFileSystem(slurm_testbed.host, port=slurm_testbed.port, username=slurm_testbed.user,
                       client_keys=[str(slurm_testbed.identity_file)], known_hosts=str(slurm_testbed.known_hosts),
                       skip_instance_cache=True)
    try:
        hub = Hub(fs, remote)
        entry = hub.publish(EXAMPLE, {"name": "digits-sshfs"}, visibility="private")
        mode = subprocess.run(slurm_testbed.ssh_argv("stat", "-c", "%a", entry.path, f"{entry.path}/model.py"),
                              capture_output=True, text=True, timeout=60).stdout.split()
        assert mode == ["700", "600"]
        assert list(hub.search_models(name="digits-sshfs")["uuid"]) == [entry["uuid"]]
        assert (hub.fetch("digits-sshfs") / "model.py").read_bytes() == (EXAMPLE / "model.py").read_bytes()
        assert not [p for p in fs.find(remote) if ".publishing-" in p]
    finally:
        subprocess.run(slurm_testbed.ssh_argv("rm", "-rf", remote), timeout=60)
