"""Storage in a Kubernetes PersistentVolumeClaim (``RESOURCE:/path`` on a kubernetes resource with
``storage_claim``), against the Kubernetes API *simulator* (not a cluster): its pods are kernels
running on this machine, and a claim is a directory of the simulator. Pods' file I/O is not
remapped, so the profile mounts the claim (``storage_mount``) at that directory's own path."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from airavata_magic.backends.kubernetes.manifests import ANNOTATION_RUNTIME
from airavata_magic.errors import InvalidArgument
from airavata_magic.profile import load_profile
from airavata_magic.storage import locations
from tests.k8s.conftest import KERNEL_IMAGE, sim  # noqa: F401  (fixture re-exported)


def _profile(tmp_path: Path, sim, claim: str, mount: Path) -> Path:  # noqa: F811
    prof = tmp_path / "cybershuttle.yml"
    prof.write_text(
        "resources:\n  lab-k8s:\n    kind: kubernetes\n"
        f"    kubeconfig: {sim.kubeconfig}\n    context: sim\n    namespace: research\n    image: {KERNEL_IMAGE}\n"
        f"    storage_claim: {claim}\n    storage_mount: {mount}\n"
        "runtimes:\n  pod: {resource: lab-k8s, memory: 1G, walltime: 30}\n"
        "storage:\n  lab: {location: 'lab-k8s:/projects'}\n")
    return prof


@pytest.fixture
def claim(sim, tmp_path):  # noqa: F811
    root = sim.create_claim("lab-data")
    (root / "projects" / "run 1").mkdir(parents=True)
    (root / "projects" / "run 1" / "table.csv").write_text("a,b\n1,2\n")
    return root


def test_a_claim_location_parses_and_refuses_what_it_cannot_be(sim, tmp_path, claim):  # noqa: F811
    prof = load_profile(str(_profile(tmp_path, sim, "lab-data", claim)))
    loc = locations.parse("x", "lab-k8s:/projects/../projects/a", profile=prof)
    assert (loc.kind, loc.root, loc.claim, loc.mount, loc.resource) == ("claim", "/projects/a", "lab-data",
                                                                        str(claim), "lab-k8s")
    with pytest.raises(InvalidArgument, match="a claim has no home directory"):
        locations.parse("x", "lab-k8s:~/data", profile=prof)
    with pytest.raises(InvalidArgument, match="reached through a pod"):
        locations.location_filesystem(loc)


def test_claim_storage_without_a_runtime_then_in_a_pod_that_mounts_it(sim, claim, notebook_factory, tmp_path):  # noqa: F811
    prof = _profile(tmp_path, sim, "lab-data", claim)
    nb = notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(prof)})
    # No runtime yet: a small storage runtime is started (said in one line) and lists the claim.
    cell = nb.ok("%storage ls lab:")
    assert "started runtime 'lab-k8s-storage' to reach claim 'lab-data'" in cell.stderr
    assert "run 1" in cell.of_type("execute_result")[0]["data"]["text/plain"]
    pods = [p["metadata"]["annotations"][ANNOTATION_RUNTIME] for p in sim.pods()]
    assert pods == ["lab-k8s-storage"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in sim.pods()[0]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["lab-data"]

    # Files both ways through the storage runtime's kernel, verified there.
    data = os.urandom((9 << 20) + 7)
    (tmp_path / "in.bin").write_bytes(data)
    cell = nb.ok(f"%copy_data local:{tmp_path / 'in.bin'} 'lab:inputs/in $x.bin' --verify")
    assert "sha256 verified" in cell.stdout and "(" in cell.stdout
    assert (claim / "projects" / "inputs" / "in $x.bin").read_bytes() == data
    nb.ok(f"%copy_data 'lab:run 1' local:{tmp_path / 'back'} --recursive --verify")
    assert (tmp_path / "back" / "table.csv").read_text() == "a,b\n1,2\n"
    assert "leaves its storage location" in nb.run("%copy_data lab:../../etc/passwd local:x").text
    assert "no such file or directory" in nb.run("%copy_data lab:missing.bin local:x").text

    # A runtime of the resource mounts the claim: copies between the two run inside its pod.
    nb.ok("%request_runtime pod")
    nb.ok("%wait_for_runtime pod --timeout 120")
    cell = nb.ok("%copy_data 'lab:run 1/table.csv' pod:work/t.csv --verify")
    assert "in-pod" in cell.stdout and "sha256 verified" in cell.stdout
    (claim / "projects" / "tree" / "sub").mkdir(parents=True)
    (claim / "projects" / "tree" / "sub" / "f.txt").write_text("f")
    os.symlink("/etc", claim / "projects" / "tree" / "escape")
    cell = nb.ok("%copy_data lab:tree pod:work/tree --recursive")
    assert "in-pod" in cell.stdout and "1 links out of the tree skipped" in cell.stdout
    seen = nb.ok("%%run_on pod\nimport os\nprint(open('work/t.csv').read(), end='')\n"
                 "print(sorted(os.listdir('work/tree')), open('work/tree/sub/f.txt').read())").stdout
    assert seen == "a,b\n1,2\n['sub'] f\n"
    cell = nb.ok("%copy_data pod:work/t.csv lab:results/t.csv")
    assert "in-pod" in cell.stdout and (claim / "projects" / "results" / "t.csv").read_text() == "a,b\n1,2\n"

    # Mount: a link in the pod's working directory to the claim's path.
    nb.ok("%storage mount lab --runtime pod --as shared")
    seen = nb.ok("%%run_on pod\nimport os\nprint(os.path.islink('shared'), sorted(os.listdir('shared')))").stdout
    assert seen == "True ['inputs', 'results', 'run 1', 'tree']\n"
    # A dataset kept in the claim loads read-only into the pod.
    nb.ok("%dataset register --name runs --location 'lab:run 1'")
    assert "(variable runs_dir)" in nb.ok("%dataset load runs --runtime pod --as runs_dir").stdout
    seen = nb.ok("%%run_on pod\nimport os\nprint(open(os.path.join(runs_dir, 'run 1', 'table.csv')).read(), end='')\n"
                 "print(oct(os.stat(os.path.join(runs_dir, 'run 1', 'table.csv')).st_mode & 0o222))").stdout
    assert seen == "a,b\n1,2\n0o0\n"
    nb.ok("%%run_on pod\nopen('afile', 'w').close()")
    assert "exists and is not a link; choose another --as" in nb.run("%storage mount lab --runtime pod --as afile").text


def test_the_command_line_reaches_a_claim_too(sim, claim, tmp_path, magic_home):  # noqa: F811
    import subprocess
    import sys

    env = dict(os.environ, AIRAVATA_MAGIC_HOME=str(magic_home),
               AIRAVATA_MAGIC_PROFILE=str(_profile(tmp_path, sim, "lab-data", claim)))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "airavata_magic.cli", *args], capture_output=True, text=True,
                              env=env, timeout=180)

    try:
        p = cli("storage", "ls", "lab:")
        assert p.returncode == 0, p.stderr
        assert "run 1" in p.stdout and "started runtime 'lab-k8s-storage'" in p.stderr
        (tmp_path / "up.txt").write_text("up")
        p = cli("copy", f"local:{tmp_path / 'up.txt'}", "lab:up.txt", "--verify")  # the same storage runtime
        assert p.returncode == 0 and "started runtime" not in p.stderr, p.stderr
        assert (claim / "projects" / "up.txt").read_text() == "up"
    finally:
        cli("stop", "lab-k8s-storage")


def test_a_runtime_whose_claim_does_not_exist_says_so(sim, notebook_factory, tmp_path):  # noqa: F811
    prof = _profile(tmp_path, sim, "no-such-claim", tmp_path / "nowhere")
    nb = notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(prof)})
    nb.ok("%request_runtime pod")
    text = nb.run("%wait_for_runtime pod --timeout 60").text
    assert 'persistentvolumeclaim "no-such-claim" not found' in text
