"""Files of a Kubernetes runtime, reached through its kernel connection, against the Kubernetes
API *simulator* (not a cluster): its pods run real kernels on this machine."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.k8s.conftest import KERNEL_IMAGE, sim  # noqa: F401  (fixture re-exported)


@pytest.fixture
def nb(notebook_factory, sim, tmp_path: Path):  # noqa: F811
    prof = tmp_path / "cybershuttle.yml"
    prof.write_text(
        "resources:\n  lab-k8s:\n    kind: kubernetes\n"
        f"    kubeconfig: {sim.kubeconfig}\n    context: sim\n    namespace: research\n    image: {KERNEL_IMAGE}\n"
        "runtimes:\n  pod: {resource: lab-k8s, memory: 1G, walltime: 30}\n")
    nb = notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(prof)})
    nb.ok("%request_runtime pod")
    nb.ok("%wait_for_runtime pod --timeout 120")
    return nb


def test_files_to_and_from_a_pod_through_its_kernel(nb, tmp_path):
    data = os.urandom((20 << 20) + 12345)  # several chunks and a partial one
    (tmp_path / "in.bin").write_bytes(data)
    cell = nb.ok(f"%copy_data local:{tmp_path / 'in.bin'} 'pod:inputs/in put.bin' --verify")
    assert "kernel" in cell.stdout and "sha256 verified" in cell.stdout
    seen = nb.ok("%%run_on pod\nimport os\nf = 'inputs/in put.bin'\n"
                 "print(os.path.isabs(os.path.abspath(f)), os.path.getsize(f), oct(os.stat(f).st_mode & 0o777))").stdout
    assert seen == f"True {len(data)} 0o644\n"
    assert nb.ok("%%run_on pod\nimport os\nprint(sorted(os.listdir('inputs')))").stdout == "['in put.bin']\n"
    cell = nb.ok(f"%copy_data 'pod:inputs/in put.bin' local:{tmp_path / 'back.bin'} --verify")
    assert "sha256 verified" in cell.stdout
    assert (tmp_path / "back.bin").read_bytes() == data

    tree = tmp_path / "tree"
    (tree / "sub dir").mkdir(parents=True)
    for i in range(30):
        (tree / "sub dir" / f"f {i} $(x);'q'.txt").write_text(str(i) * 100)
    os.symlink("sub dir", tree / "inside")
    os.symlink("/etc", tree / "escape")
    cell = nb.ok(f"%copy_data local:{tree} pod:work/tree --recursive --verify")
    assert "copied 30 file(s)" in cell.stdout and "sha256 verified" in cell.stdout and "1 links out" in cell.stdout
    listing = nb.ok("%%run_on pod\nimport os\nos.symlink('/etc', 'work/tree/pod-escape')\n"
                    "print(sorted(os.listdir('work/tree')), len(os.listdir('work/tree/sub dir')))").stdout
    assert listing == "['inside', 'pod-escape', 'sub dir'] 30\n"
    cell = nb.ok(f"%copy_data pod:work/tree local:{tmp_path / 'back'} --recursive --verify")
    assert "sha256 verified" in cell.stdout and "1 links out" in cell.stdout
    assert sorted(os.listdir(tmp_path / "back")) == ["inside", "sub dir"]
    assert (tmp_path / "back" / "sub dir" / "f 7 $(x);'q'.txt").read_text() == "7" * 100
    assert "directories go between a pod and this machine only" in nb.run(
        "%storage register --name objs --location memory://am-k8s\n%copy_data pod:work/tree objs:t --recursive").text
    assert "cannot reach storage" in nb.run(
        f"%storage register --name here --location {tmp_path}\n%storage mount here --runtime pod").text


def test_storage_dataset_loads_read_only_into_the_pod(nb, tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "table.csv").write_text("a,b\n1,2\n")
    nb.ok(f"%storage register --name lab --location {tmp_path / 'lab'}")
    nb.ok('%dataset register --name tbl --location lab:table.csv --after-download "wc -l table.csv > lines.txt"')
    out = nb.ok("%dataset load tbl --runtime pod --as tbl_dir").stdout
    assert "(variable tbl_dir)" in out
    seen = nb.ok("%%run_on pod\nimport os\nprint(open(os.path.join(tbl_dir, 'table.csv')).read(), end='')\n"
                 "print(open(os.path.join(tbl_dir, 'lines.txt')).read().split()[0])\n"
                 "print(oct(os.stat(os.path.join(tbl_dir, 'table.csv')).st_mode & 0o222), "
                 "oct(os.stat(tbl_dir).st_mode & 0o222))").stdout
    assert seen == "a,b\n1,2\n2\n0o0 0o0\n"
    again = nb.ok("%dataset load tbl --runtime pod --as again").stdout  # a cache hit: same place
    assert nb.ok("%%run_on pod\nprint(again == tbl_dir)").stdout == "True\n" and "(variable again)" in again
    nb.ok("%dataset register --name bad --location lab:table.csv --after-download 'exit 3'")
    assert "--after-download exited 3" in nb.run("%dataset load bad --runtime pod").text
    left = nb.ok("%%run_on pod\nimport os\nd = os.path.dirname(os.path.dirname(tbl_dir))\n"
                 "print(sorted(n.split('-')[0] for n in os.listdir(d)))").stdout
    assert left == "['tbl']\n"  # the failed load left nothing behind
