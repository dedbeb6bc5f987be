"""Fan-out as a Kubernetes Indexed Job, against the project's Kubernetes API **simulator** (not a
cluster: tests/k8s/simulator.py with its Job controller, tests/k8s/sim_jobs.py), and the Job and
payload manifests checked against the official schemas (kubernetes-validate)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from airavata_magic.errors import InvalidArgument
from airavata_magic.fanout import api
from airavata_magic.fanout.kubernetes import INDEX_ANNOTATION, outputs_from_log, render_job, render_payload
from tests.k8s.simulator import Simulator

from .conftest import ALGORITHM, hits_match_truth

IMAGE = "sim/python:1"  # the simulator's image: this venv's python (numpy, pandas, h5py)


@pytest.fixture
def sim(tmp_path):
    s = Simulator(tmp_path / "sim", {IMAGE: str(Path(sys.executable).parent)}).start()
    yield s
    s.stop()


@pytest.fixture
def k8s_profile(sim, tmp_path) -> Path:
    p = tmp_path / "cybershuttle.yml"
    p.write_text(yaml.safe_dump({"resources": {"lab": {
        "kind": "kubernetes", "kubeconfig": str(sim.kubeconfig), "context": "sim", "image": IMAGE, "python": "python"}}}))
    return p


@pytest.mark.parametrize("version", ["1.33.0", "1.37.0"])
def test_job_and_payload_are_valid_manifests(version):
    job = render_job(name="fo-20261130-091502-3fa2-s0", run_id="fo-20261130-091502-3fa2", namespace="research",
                     image="python:3.12", python="python", algorithm="alg.detect.py", list_key="list.tsv", count=8,
                     parallel=3, cpus=1, memory_mb=512, tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
                     claim=("lab-data", "/storage"))
    kubernetes_validate.validate(job, version, strict=True)
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["parallelism"] == 3
    assert job["spec"]["completions"] == 8 and job["spec"]["backoffLimitPerIndex"] == 0
    # the payload Secret is mounted 0440: the non-root task reads it through its group (fsGroup)
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["secret"]["defaultMode"] & 0o040
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    payload = render_payload(name="fo-x-s0", run_id="fo-x", namespace="research", files={"list.tsv": b"0\ta\n"})
    kubernetes_validate.validate(payload, version, strict=True)


def test_indexed_job_fans_out_gathers_and_retries_the_failed_index(sim, k8s_profile, observations, tmp_path):
    obs_dir, truth = observations
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = sorted(obs_dir.glob("obs-*.h5"))[:3]
    for f in files:
        shutil.copy(f, inputs / f.name)
    (inputs / "obs-zbroken.h5").write_bytes(b"not HDF5")
    res = api.run(str(ALGORITHM), str(inputs / "*.h5"), resource="lab", parallel=2, output=str(tmp_path / "out"),
                  file=str(k8s_profile), timeout=180)
    jobs = list(sim.objects["jobs"].values())
    assert len(jobs) == 1  # ONE Indexed Job for the four inputs
    spec = jobs[0]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 4 and spec["parallelism"] == 2
    pods = sim.pods()
    assert sorted(int(p["metadata"]["annotations"][INDEX_ANNOTATION]) for p in pods) == [0, 1, 2, 3]
    assert list(res.failed["input"]) == [str(inputs / "obs-zbroken.h5")]
    assert "signature" in res.failed["stderr_tail"].iloc[0] or "OSError" in res.failed["stderr_tail"].iloc[0]
    names = {str(inputs / f.name): f.name for f in files}
    assert set(res.arrays) == set(names)
    assert not hits_match_truth(res.hits, truth, names)

    shutil.copy(files[0], inputs / "obs-zbroken.h5")
    again = api.retry(res.run_id, timeout=180)
    assert again.failed.empty and len(again.arrays) == 4
    second = [j for j in sim.objects["jobs"].values() if j["metadata"]["name"].endswith("-s1")]
    assert len(second) == 1 and second[0]["spec"]["completions"] == 1  # only the failed input again


def test_inputs_in_the_resources_claim_are_read_where_they_are(sim, observations, tmp_path):
    obs_dir, truth = observations
    root = sim.create_claim("lab-data")
    files = sorted(obs_dir.glob("obs-*.h5"))[:2]
    (root / "obs").mkdir()
    for f in files:
        shutil.copy(f, root / "obs" / f.name)
    prof = tmp_path / "claim.yml"
    prof.write_text(yaml.safe_dump({"resources": {"lab": {
        "kind": "kubernetes", "kubeconfig": str(sim.kubeconfig), "context": "sim", "image": IMAGE, "python": "python",
        "storage_claim": "lab-data", "storage_mount": str(root)}}}))
    try:
        res = api.run(str(ALGORITHM), "lab:/obs/*.h5", resource="lab", parallel=2, output=str(tmp_path / "out"),
                      file=str(prof), timeout=180)
    finally:
        from airavata_magic import get_manager

        get_manager().stop("lab-storage")  # the runtime that matched the glob in the claim
    (job,) = sim.objects["jobs"].values()
    pod = job["spec"]["template"]["spec"]
    assert {"name": "storage", "persistentVolumeClaim": {"claimName": "lab-data", "readOnly": True}} in pod["volumes"]
    secret = sim.secrets()[-1]["data"]
    assert set(secret) == {"list.tsv", f"alg.{ALGORITHM.name}"}  # no input bytes travelled with the Job
    names = {f"lab:/obs/{f.name}": f.name for f in files}  # as the user wrote them
    assert res.failed.empty and set(res.arrays) == set(names)
    assert not hits_match_truth(res.hits, truth, names)
    with pytest.raises(InvalidArgument, match="leaves its storage location"):
        api.run(str(ALGORITHM), "lab:/../etc/*", resource="lab", file=str(prof))


def test_outputs_marker_parsing():
    assert outputs_from_log("noise\n@@airavata-outputs-begin\naGVsbG8=\n@@airavata-outputs-end\n") == b"hello"
    assert outputs_from_log("killed before the end\n@@airavata-outputs-begin\naGVs") is None


@pytest.fixture
def shared_net_sim(tmp_path):
    """A simulator whose pods share the host's loopback: the simulated cluster network the ranks
    of a scale run talk over (headless-Service names resolve to it)."""
    s = Simulator(tmp_path / "simnet", {IMAGE: str(Path(sys.executable).parent)}, netns=False).start()
    yield s
    s.stop()


def _profile_for(sim, tmp_path) -> Path:
    p = tmp_path / "k8s.yml"
    p.write_text(yaml.safe_dump({"resources": {"lab": {
        "kind": "kubernetes", "kubeconfig": str(sim.kubeconfig), "context": "sim", "image": IMAGE, "python": "python",
        "cost": {"cpu_hour": 0.1}}}}))
    return p


@pytest.mark.parametrize("version", ["1.33.0", "1.37.0"])
def test_scale_service_and_job_are_valid_manifests(version):
    from airavata_magic.fanout.scale_k8s import render_scale

    svc, job = render_scale(name="sc-20261130-091502-3fa2-w4", run_id="sc-20261130-091502-3fa2", namespace="research",
                            world=4, image="python:3.12", python="python", port=29500, threads=2, gpus=1)
    kubernetes_validate.validate(svc, version, strict=True)
    kubernetes_validate.validate(job, version, strict=True)
    assert svc["spec"]["clusterIP"] == "None" and job["spec"]["template"]["spec"]["subdomain"] == svc["metadata"]["name"]
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4


def test_scale_run_on_indexed_jobs_and_a_failing_rank(shared_net_sim, tmp_path):
    from airavata_magic.errors import RuntimeFailed
    from airavata_magic.fanout.scale import scale_run

    from .test_scale import N, SCRIPT, _failing_copy

    prof = _profile_for(shared_net_sim, tmp_path)
    res = scale_run(str(SCRIPT), world_sizes="1,2", resource="lab", file=str(prof), output=str(tmp_path / "s"), timeout=240)
    assert list(res.table["world_size"]) == [1, 2] and (res.table["samples"] == N).all()
    assert set(res.ranks["total_samples_seen_by_all_reduce"]) == {N}  # rank 0 and 1 met through the Service name
    assert (res.table["cost"] > 0).all()
    assert not shared_net_sim.objects["jobs"] and not shared_net_sim.objects["services"]  # cleaned up
    with pytest.raises(RuntimeFailed, match="world size 2: rank 1 exited 1"):
        scale_run(str(_failing_copy(tmp_path, 1)), world_sizes="2", resource="lab", file=str(prof),
                  output=str(tmp_path / "f"), timeout=240)
