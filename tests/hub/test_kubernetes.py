"""Training tasks as Kubernetes Jobs, against the project's Kubernetes API **simulator** (not a
cluster: tests/k8s/simulator.py and its Job controller, tests/k8s/sim_jobs.py). The simulator's
kubelet runs each Job's pod as a local process with this venv's python (torch), so the task
really trains; its data goes in through the Job's Secret and its metrics and weights come back
through the pod log only (the pod has no file system in common with the test).
"""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import sys
import tarfile
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from airavata_magic.errors import InvalidArgument
from airavata_magic.hub import schedulers as sch
from airavata_magic.hub import tasks
from airavata_magic.hub.kubernetes import LABEL_TASK, harvest, job_name, job_view, render_job, render_secret
from tests.k8s.simulator import Simulator

from .conftest import EXAMPLE
from .test_local import accuracy

IMAGE = "sim/torch:1"  # the simulator's image: this venv's python (numpy, torch, safetensors)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Simulator(tmp_path_factory.mktemp("sim"), {IMAGE: str(Path(sys.executable).parent)}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def k8s_profile(sim, tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("k8s-profile") / "cybershuttle.yml"
    p.write_text(yaml.safe_dump({
        "resources": {"lab": {"kind": "kubernetes", "kubeconfig": str(sim.kubeconfig), "context": "sim",
                              "image": IMAGE, "python": "python"}},
        "runtimes": {"k8s_cpu": {"resource": "lab", "cpus": 1, "memory": "2048M", "walltime": 20},
                     "k8s_huge": {"resource": "lab", "cpus": 64},
                     "k8s_short": {"resource": "lab", "walltime": 1}}}))
    return str(p)


def _secret_files(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def _wait_state(task_id: str, state: str, timeout: float = 180) -> tasks.Task:
    deadline = time.monotonic() + timeout
    while True:
        t = tasks.show(task_id)[0]
        if t.status.get("state") == state or t.state in tasks.TERMINAL:
            return t
        assert time.monotonic() < deadline, f"task {task_id} never reached {state}: {t.state} {t.reason}"
        time.sleep(0.3)


def test_train_then_finetune_as_jobs_with_metrics_and_weights_through_the_api(sim, k8s_profile, digits):
    base, shifted = digits["base"], digits["shifted"]
    t = tasks.new("k8s-train", "train", str(EXAMPLE), str(base / "train.npz"), str(base / "val.npz"),
                  test_data=str(base / "test.npz"), runtime="k8s_cpu", file=k8s_profile,
                  params={"epochs": 8, "learning_rate": 0.05})
    assert t.state == "SCHEDULED" and t.kind == "kubernetes" and t.job_id == job_name(t.id)
    job = sim.objects["jobs"][("research", t.job_id)]
    pod_spec = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0 and pod_spec["restartPolicy"] == "Never"
    assert pod_spec["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "2048Mi"}
    assert pod_spec["activeDeadlineSeconds"] == 20 * 60
    secret = sim.objects["secrets"][("research", t.job_id)]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]  # goes with the Job
    with tarfile.open(fileobj=io.BytesIO(_secret_files(secret)["task.tgz"])) as tar:
        assert {"train.py", "task.json", "data/train.npz", "data/test.npz", "package/model.json"} <= set(tar.getnames())

    seen: list[int] = []
    done = tasks.wait(t.id, timeout=400, on_update=lambda task, m: seen.append(len(m)))
    assert done.state == "FINISHED", (done.reason, tasks.log_tail(done))
    m = tasks.metrics(done)
    assert list(m["epoch"]) == list(range(1, 9))
    assert m["val_accuracy"].iloc[0] < 0.6 and m["val_accuracy"].max() > 0.9
    assert done.status["test_accuracy"] > 0.9
    # metrics are read from the pod log while the Job runs; on a fast machine all 8 epochs can land
    # between two polls, so only the end is certain (the count went 3 ways under load, 2 without)
    assert seen and seen[-1] == 8 and seen == sorted(seen)
    weights = Path(done.task_dir) / done.status["weights"]
    assert weights.stat().st_size > 10_000 and weights.stat().st_mode & 0o077 == 0

    ft = tasks.new("k8s-ft", "finetune", str(EXAMPLE), str(shifted / "train.npz"), str(shifted / "val.npz"),
                   runtime="k8s_cpu", file=k8s_profile, params={"epochs": 1, "learning_rate": 0.01},
                   trained_task_id=done.id)
    init = _secret_files(sim.objects["secrets"][("research", ft.job_id)])
    with tarfile.open(fileobj=io.BytesIO(init["task.tgz"])) as tar:
        assert tar.extractfile("init.safetensors").read() == weights.read_bytes()  # the harvested weights went back in
    ft = tasks.wait(ft.id, timeout=300)
    assert ft.state == "FINISHED", ft.reason
    first = tasks.metrics(ft)["val_accuracy"].iloc[0]
    assert first > 0.9 and first > m["val_accuracy"].iloc[0] + 0.3  # started from the trained weights

    table = tasks.list_tasks()
    mine = table[table["id"].isin([done.id, ft.id])]
    assert set(mine["status"]) == {"FINISHED"} and set(mine["job_id"]) == {done.job_id, ft.job_id}


def test_cancel_deletes_the_job_and_the_task_ends_killed(sim, k8s_profile, digits):
    base = digits["base"]
    t = tasks.new("k8s-long", "train", str(EXAMPLE), str(base / "train.npz"), str(base / "val.npz"),
                  runtime="k8s_cpu", file=k8s_profile, params={"epochs": 10000, "batch_size": 8})
    running = _wait_state(t.id, "RUNNING")
    assert running.state == "RUNNING", running.reason
    assert "cancelled task" in tasks.cancel(t.id)
    done = tasks.wait(t.id, timeout=60)
    assert done.state == "KILLED", (done.state, done.reason)
    assert ("research", t.job_id) not in sim.objects["jobs"] and ("research", t.job_id) not in sim.objects["secrets"]
    deadline = time.monotonic() + 30
    while any(p["metadata"]["labels"].get(LABEL_TASK) == t.id for p in sim.pods()):
        assert time.monotonic() < deadline, "the task's pod outlived its Job"
        time.sleep(0.2)


def test_a_pod_killed_outside_fails_and_a_job_deleted_outside_is_killed(sim, k8s_profile, digits):
    base = digits["base"]
    long = {"epochs": 10000, "batch_size": 8}
    a = tasks.new("k8s-oom", "train", str(EXAMPLE), str(base / "train.npz"), str(base / "val.npz"),
                  runtime="k8s_cpu", file=k8s_profile, params=long)
    b = tasks.new("k8s-del", "train", str(EXAMPLE), str(base / "train.npz"), str(base / "val.npz"),
                  runtime="k8s_cpu", file=k8s_profile, params=long)
    for t in (a, b):
        assert _wait_state(t.id, "RUNNING").state == "RUNNING"
    pod = next(p for p in sim.pods() if p["metadata"]["labels"].get(LABEL_TASK) == a.id)
    sim.oom_kill(pod["metadata"]["name"])
    # deleted from outside (as kubectl delete job does), not by %task cancel
    tasks.sch_of(b)._call("BatchV1Api", "delete_namespaced_job", b.job_id, "research", propagation_policy="Background")
    a, b = tasks.wait(a.id, timeout=60), tasks.wait(b.id, timeout=60)
    assert a.state == "FAILED" and "OOMKilled" in a.reason, (a.state, a.reason)
    assert a.status["state"] == "RUNNING"  # its own file never got to say otherwise: the Job's word won
    assert b.state == "KILLED" and "deleted" in b.reason, (b.state, b.reason)


def test_a_task_no_node_can_take_waits_scheduled_with_the_reason(sim, k8s_profile, digits):
    base = digits["base"]
    t = tasks.new("k8s-big", "train", str(EXAMPLE), str(base / "train.npz"), str(base / "val.npz"),
                  runtime="k8s_huge", file=k8s_profile)
    deadline = time.monotonic() + 30
    while "Insufficient cpu" not in (shown := tasks.show(t.id)[0]).reason:
        assert time.monotonic() < deadline, shown.reason
        time.sleep(0.2)
    assert shown.state == "SCHEDULED"
    tasks.cancel(t.id)
    assert tasks.wait(t.id, timeout=30).state == "KILLED"


def test_bad_input_is_one_line_and_leaves_nothing(sim, k8s_profile, digits, tmp_path):
    import numpy as np

    base = digits["base"]
    before_jobs, before_secrets = set(sim.objects["jobs"]), set(sim.objects["secrets"])
    staged_before = set(tasks._dir().iterdir())
    with pytest.raises(InvalidArgument, match="names no storage_claim: give a local .npz file"):
        tasks.new("k8s-path", "train", str(EXAMPLE), "lab:/data/train.npz", str(base / "val.npz"),
                  runtime="k8s_cpu", file=k8s_profile)
    rng = np.random.default_rng(0)  # incompressible: larger than a Secret can carry
    np.savez(tmp_path / "big.npz", X=rng.random((40_000, 8, 8), dtype=np.float32), y=np.zeros(40_000, dtype=np.int64))
    with pytest.raises(InvalidArgument, match=r"ships at most 900 KiB") as e:
        tasks.new("k8s-big-data", "train", str(EXAMPLE), str(tmp_path / "big.npz"), str(base / "val.npz"),
                  runtime="k8s_cpu", file=k8s_profile)
    assert "\n" not in str(e.value)
    assert set(sim.objects["jobs"]) == before_jobs and set(sim.objects["secrets"]) == before_secrets
    assert set(tasks._dir().iterdir()) == staged_before  # no staged folder, no record


# -- pure parts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.33.0", "1.37.0"])
def test_job_and_secret_are_valid_manifests(version):
    from airavata_magic.backends.kubernetes.manifests import PodRequest

    req = PodRequest(name="am-task2026113009481200", namespace="research", runtime="r", owner="alice",
                     image="quay.io/jupyter/pytorch-notebook:latest", cpus=2, memory_mb=4096, gpus=1,
                     node_selector={"pool": "gpu"}, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    job = render_job(req, "TASK2026113009481200")
    kubernetes_validate.validate(job, version, strict=True)
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "4096Mi", "nvidia.com/gpu": "1"}
    secret = render_secret(name=req.name, namespace="research", task_id="TASK2026113009481200", owner="alice",
                           files={"pod.py": b"print()", "task.tgz": b"\0" * 10})
    kubernetes_validate.validate(secret, version, strict=True)
    in_claim = render_job(dataclasses.replace(req, storage_claim="lab-data"), "TASK2026113009481200",
                          "/storage/.airavata-magic/tasks/TASK2026113009481200")
    kubernetes_validate.validate(in_claim, version, strict=True)
    assert in_claim["spec"]["template"]["spec"]["containers"][0]["command"][2:] == [
        "-", "/storage/.airavata-magic/tasks/TASK2026113009481200", "--weights-stay"]


def _pod(phase: str, **status) -> dict:
    return {"metadata": {"name": "p"}, "status": {"phase": phase, **status}}


@pytest.mark.parametrize("job, pod, own, phase, reason", [
    ({"status": {}}, None, None, sch.PENDING, "waiting for the Job's pod"),
    ({"status": {}}, _pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                  "message": "0/2 nodes are available"}]), None, sch.PENDING,
     "Unschedulable: 0/2 nodes are available"),
    ({"status": {}}, _pod("Pending", containerStatuses=[{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]),
     None, sch.PENDING, "ImagePullBackOff"),
    ({"status": {"active": 1}}, _pod("Running"), "RUNNING", sch.RUNNING, ""),
    ({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, _pod("Succeeded"), "FINISHED", sch.ENDED, ""),
    ({"status": {"active": 1}}, _pod("Succeeded"), "FINISHED", sch.ENDED, ""),
    ({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}},
     _pod("Failed", containerStatuses=[{"state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]),
     "RUNNING", sch.FAILED, "OOMKilled (exit code 137)"),
    ({"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}},
     _pod("Failed", reason="DeadlineExceeded", message="Pod was active on the node longer than the specified deadline"),
     "RUNNING", sch.FAILED, "DeadlineExceeded"),
    (None, None, "RUNNING", sch.CANCELLED, "deleted before the task ended"),
    (None, None, "FINISHED", sch.ENDED, "deleted after it finished"),
])
def test_job_and_pod_status_map_to_a_view(job, pod, own, phase, reason):
    view = job_view(job, pod, own)
    assert view.phase == phase and reason in view.reason


def test_harvest_mirrors_live_lines_then_the_final_outputs(tmp_path):
    from airavata_magic.fanout.kubernetes import BEGIN, END

    live = ("Traceback? no\n@@airavata-task status {\"state\": \"RUNNING\", \"epoch\": 1}\n"
            "@@airavata-task metrics {\"epoch\": 1, \"val_accuracy\": 0.5}\n")
    assert harvest(live, tmp_path) is False
    assert json.loads((tmp_path / "status.json").read_text())["epoch"] == 1
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 1
    assert (tmp_path / "job.log").read_text() == "Traceback? no\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("status.json", b'{"state": "FINISHED", "weights": "weights.pt"}'), ("weights.pt", b"W")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    final = live + f"{BEGIN}\n{base64.b64encode(buf.getvalue()).decode()}\n{END}\n"
    assert harvest(final, tmp_path) is True
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "FINISHED"
    assert (tmp_path / "weights.pt").read_bytes() == b"W" and BEGIN not in (tmp_path / "job.log").read_text()
    assert (tmp_path / "weights.pt").stat().st_mode & 0o077 == 0  # private, whatever the pod said


def test_inference_and_modify_on_a_kubernetes_runtime(sim, k8s_profile, trained, digits, hub):
    """The package goes into the pod through its kernel connection (no SSH, no shared disk), once."""
    import pandas as pd

    from airavata_magic import get_manager, storage
    from airavata_magic.hub import inference
    from airavata_magic.hub.inference import _Quiet

    entry = tasks.publish(trained["task"].id, name="digits-for-k8s", visibility="public")
    manager = get_manager()
    manager.request("k8s_cpu", file=k8s_profile)
    try:
        manager.wait("k8s_cpu", timeout=180)
        base = digits["base"]
        storage.copy(f"local:{base / 'inputs'}", "k8s_cpu:inputs", recursive=True, progress=False, manager=manager)
        df = inference.run(entry["name"], "inputs", "preds", runtime="k8s_cpu", batch_size=64)
        assert isinstance(df, pd.DataFrame) and len(df) == 200
        assert accuracy(df, base / "inputs_labels.csv") > 0.9
        assert df.attrs["results"]["num_batches"] == 4
        print(inference.load_modify(entry["name"], runtime="k8s_cpu", var="net"))  # the cached package
        out = manager.run(["k8s_cpu"], "assert type(net).__name__ == 'DigitsNet', type(net)", _Quiet())
        assert out[0].status == "ok", out[0].error
        sent = [p for p in (Path(sim.workdir) / "pods").glob(f"*/home/.airavata-magic/hub-cache/{entry['uuid']}/*")]
        assert {p.name for p in sent} >= {"model.json", "_airavata_infer.py", "weights.safetensors"}
    finally:
        manager.stop("k8s_cpu")


def test_a_task_on_a_resource_with_a_claim_trains_in_it(sim, digits, tmp_path):
    """Data as a path in the claim is linked, not shipped; the weights stay in the claim and are
    fetched from there; only pod.py travels in the Secret."""
    root = sim.create_claim("lab-data")
    (root / "data").mkdir()
    (root / "data" / "train.npz").write_bytes((digits["base"] / "train.npz").read_bytes())
    prof = tmp_path / "claim.yml"
    prof.write_text(yaml.safe_dump({
        "resources": {"lab": {"kind": "kubernetes", "kubeconfig": str(sim.kubeconfig), "context": "sim",
                              "image": IMAGE, "python": "python", "storage_claim": "lab-data",
                              "storage_mount": str(root)}},
        "runtimes": {"k8s_claim": {"resource": "lab", "cpus": 1, "memory": "2048M", "walltime": 20}}}))
    from airavata_magic import get_manager

    try:
        t = tasks.new("k8s-claim", "train", str(EXAMPLE), "lab:/data/train.npz", str(digits["base"] / "val.npz"),
                      runtime="k8s_claim", file=str(prof), params={"epochs": 2})
        seen: list[int] = []
        done = tasks.wait(t.id, timeout=300, on_update=lambda task, m: seen.append(len(m)), poll=0.2)
        assert done.state == "FINISHED", done.reason
        assert seen[-1] == 2
        secret = next(x for x in sim.secrets() if x["metadata"]["name"] == t.job_id)
        assert set(secret["data"]) == {"pod.py"}  # the task itself went into the claim
        job = sim.objects["jobs"][("research", t.job_id)]
        assert {"name": "storage", "persistentVolumeClaim": {"claimName": "lab-data"}} in \
            job["spec"]["template"]["spec"]["volumes"]
        there = root / ".airavata-magic" / "tasks" / t.id
        assert (there / "data" / "train.npz").is_symlink() and (there / done.status["weights"]).stat().st_size > 10_000
        here = Path(done.task_dir) / done.status["weights"]  # fetched from the claim, private
        assert here.read_bytes() == (there / done.status["weights"]).read_bytes() and here.stat().st_mode & 0o077 == 0
        with pytest.raises(InvalidArgument, match="lab:/data/missing.npz is not a file in the claim"):
            tasks.new("k8s-claim-missing", "train", str(EXAMPLE), "lab:/data/missing.npz",
                      str(digits["base"] / "val.npz"), runtime="k8s_claim", file=str(prof))
    finally:
        get_manager().stop("lab-storage")
