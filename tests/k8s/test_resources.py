"""``%resources`` / ``am.compute.resources()`` for a kubernetes resource, against the Kubernetes
API **simulator** (not a cluster): its nodes' allocatable CPU, memory and GPUs when this user may
list nodes (``GET /api/v1/nodes``, tests/k8s/sim_nodes.py), one "not visible" row when not."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from airavata_magic.cluster.api import resources

from .simulator import Node, Simulator


@pytest.fixture
def nodes_sim(tmp_path):
    nodes = [Node("cpu-a", {"pool": "cpu"}, {"cpu": 7.5, "memory": 30720}),
             Node("gpu-a", {"pool": "gpu"}, {"cpu": 32, "memory": 262144, "amd.com/gpu": 4, "nvidia.com/gpu": 1},
                  [{"key": "amd.com/gpu", "value": "present", "effect": "NoSchedule"}])]
    s = Simulator(tmp_path / "sim", {"sim/py:1": str(Path(sys.executable).parent)}, nodes=nodes).start()
    yield s
    s.stop()


def _profile(sim: Simulator, tmp_path: Path, **extra) -> str:
    p = tmp_path / "cybershuttle.yml"
    p.write_text(yaml.safe_dump({"resources": {"lab": {"kind": "kubernetes", "kubeconfig": str(sim.kubeconfig),
                                                       "context": "sim", **extra}}}))
    return str(p)


def test_nodes_allocatable_cpu_memory_and_gpus(nodes_sim, tmp_path):
    df = resources("lab", file=_profile(nodes_sim, tmp_path, gpu_resource="amd.com/gpu"))
    assert list(df["partition"]) == ["cpu-a", "gpu-a"]
    assert set(df["kind"]) == {"kubernetes"} and set(df["host"]) == {"sim"} and set(df["state"]) == {"ready"}
    assert list(df["cpus"]) == [7.5, 32.0]  # 7500m
    assert list(df["memory_mb"]) == [30720, 262144]
    assert list(df["gpus"]) == [0, 4]  # counted under the profile's gpu_resource
    assert df["note"].iloc[0] == "" and "amd.com/gpu=present:NoSchedule" in df["note"].iloc[1]
    assert ("GET", "/api/v1/nodes") in nodes_sim.requests


def test_a_user_who_may_not_list_nodes_gets_one_not_visible_row(nodes_sim, tmp_path):
    nodes_sim.deny("list", "nodes")
    df = resources(file=_profile(nodes_sim, tmp_path))
    row = df[df["resource"] == "lab"]
    assert len(row) == 1 and row["cpus"].isna().all()
    assert row["note"].iloc[0].startswith("not visible: this user may not list nodes")
    assert (df["resource"] == "local").any()  # the other resources are still listed


def test_an_unreachable_api_says_why(nodes_sim, tmp_path):
    nodes_sim.unavailable = True
    df = resources("lab", file=_profile(nodes_sim, tmp_path))
    assert len(df) == 1 and df["note"].iloc[0].startswith("not visible: ") and "503" in df["note"].iloc[0]
