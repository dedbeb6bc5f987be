"""Kubernetes runtimes from a real notebook kernel (the magics, the manager, the relay), against
the Kubernetes API simulator (not a cluster)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import KERNEL_IMAGE


@pytest.fixture
def nb(notebook_factory, sim, tmp_path: Path):
    prof = tmp_path / "cybershuttle.yml"
    prof.write_text(
        "resources:\n"
        "  lab-k8s:\n"
        "    kind: kubernetes\n"
        f"    kubeconfig: {sim.kubeconfig}\n"
        "    context: sim\n"
        "    namespace: research\n"
        f"    image: {KERNEL_IMAGE}\n"
        "    node_selector: {gpu: a100}\n"
        "    tolerations: [{key: nvidia.com/gpu, operator: Exists}]\n"
        "runtimes:\n"
        "  gpu1: {resource: lab-k8s, gpus: 1, memory: 2G, walltime: 30}\n"
    )
    return notebook_factory(env={"AIRAVATA_MAGIC_PROFILE": str(prof)})


def test_gpu_pod_runs_cells_survives_a_dropped_forward_and_stops_clean(nb, sim):
    cell = nb.ok("%request_runtime gpu1")
    pod = sim.pods()[0]
    assert pod["metadata"]["name"] in cell.stdout
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cell = nb.ok("%wait_for_runtime gpu1 --live")
    assert cell.of_type("display_data") and "is ready" in cell.text
    nb.ok("%switch_runtime gpu1")
    cell = nb.ok("import os\nprint(os.environ['NVIDIA_VISIBLE_DEVICES'], os.environ['HOSTNAME'])\n6 * 7")
    assert cell.stdout.split() == ["0", pod["metadata"]["name"]]
    assert cell.of_type("execute_result")[0]["data"]["text/plain"] == "42"
    nb.ok("kept = 'state survives'")
    # the API server drops every stream (as real ones do after some minutes): the forward opens
    # fresh ones by itself on the same local ports, and the next cells find the kernel's state
    name = pod["metadata"]["name"]
    for _ in range(2):
        streams = sim.open_streams(name)
        dropped_at = time.monotonic()
        assert streams >= 4 and sim.drop_portforwards() == streams
        _restored(sim, name, streams, dropped_at)
        cell = nb.ok("print(kept)\nimport time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.1)", timeout=30)
        assert cell.stdout == "state survives\n0\n1\n2\n"
    cell = nb.ok("%stop_runtime gpu1")
    assert "cells run locally again" in cell.stdout
    assert sim.pods() == [] and sim.secrets() == []


def _restored(sim, name: str, streams: int, since: float, timeout: float = 10) -> None:
    """Wait until as many new streams reach the kernel again, without any cell asking for it.

    A message a client sends in the very instant a stream drops is lost with it, as over any
    TCP proxy (the relay cannot tell; see the lead's notes): the test therefore drops streams
    between cells and waits for the restore, which takes about ZeroMQ's reconnect interval.
    """
    deadline = time.monotonic() + timeout

    def back() -> int:
        return sum(1 for t, pod, _, event in list(sim.stream_log) if t > since and pod == name and event == "connected")

    while back() < streams:
        assert time.monotonic() < deadline, f"only {back()} of {streams} streams came back"
        time.sleep(0.02)
    time.sleep(0.2)  # ZeroMQ's handshakes over the new streams


def test_wait_ends_at_once_with_the_event_message(nb, sim):
    nb.ok("%request_runtime nope --resource lab-k8s --image registry.invalid/lab/kernel:1")
    t0 = time.monotonic()
    cell = nb.run("%wait_for_runtime nope --live", timeout=60)
    assert cell.status == "error" and time.monotonic() - t0 < 10
    assert "UsageError: runtime 'nope' failed: ErrImagePull" in cell.stderr
    assert 'Failed to pull image "registry.invalid/lab/kernel:1"' in cell.stderr  # the events, as log tail
    live = (cell.of_type("update_display_data") or cell.of_type("display_data"))[-1]["data"]["text/plain"]
    assert "state: failed" in live and "reason: ErrImagePull" in live and "Warning Failed: Error: ErrImagePull" in live
    nb.ok("%request_runtime many --resource lab-k8s --gpus 8")
    cell = nb.run("%wait_for_runtime many", timeout=60)
    assert cell.status == "error" and "Unschedulable: 0/2 nodes are available" in cell.stderr
    assert "Insufficient nvidia.com/gpu" in cell.stderr
    assert sim.pods() == []  # failed runtimes do not keep their pods


def test_attach_after_the_notebook_kernel_restarts(nb, sim):
    nb.ok("%request_runtime gpu1")
    nb.ok("%wait_for_runtime gpu1")
    nb.ok("%%run_on gpu1\nmodel = 'trained for hours'")
    nb.restart()
    cell = nb.ok("%attach_runtime gpu1")
    assert "attached" in cell.stdout
    assert nb.ok("%%run_on gpu1\nprint(model)").stdout == "trained for hours\n"
    cell = nb.ok("%restart_runtime gpu1", timeout=90)
    assert nb.run("%%run_on gpu1\nprint(model)").status == "error"  # a fresh kernel, same pod
    assert len(sim.pods()) == 1


def test_interrupt_stops_the_remote_cell_and_keeps_the_kernel(nb, sim):
    nb.ok("%request_runtime gpu1")
    nb.ok("%wait_for_runtime gpu1")
    nb.ok("%switch_runtime gpu1")
    nb.ok("x = 5")
    t0 = time.monotonic()
    cell = nb.run("import time\ntime.sleep(60)", interrupt_after=1.0, timeout=30)
    assert cell.status == "error" and cell.reply["ename"] == "KeyboardInterrupt"
    assert time.monotonic() - t0 < 5
    # ipykernel signals its whole process group; the pod's shell survives it and the kernel too
    assert nb.ok("print(x)").stdout == "5\n"
    status = sim.pods()[0]["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0 and "running" in status["state"]


def test_a_kernel_killed_during_a_cell_ends_it_within_seconds(nb, sim):
    """The kubelet restarts a killed kernel's container within a second, on the same ports, so
    the heartbeat keeps being answered: the backend's pod check must end the cell."""
    import threading

    nb.ok("%request_runtime gpu1")
    nb.ok("%wait_for_runtime gpu1")
    name = sim.pods()[0]["metadata"]["name"]
    threading.Timer(1.0, sim.oom_kill, args=(name,)).start()
    t0 = time.monotonic()
    cell = nb.run("%%run_on gpu1\nimport time\ntime.sleep(60)", timeout=40)
    assert cell.status == "error" and time.monotonic() - t0 < 10
    assert "gpu1" in cell.stderr and "dead" in cell.stderr
    table = nb.ok("%%run_on local\nprint(get_ipython().run_line_magic('runtimes', '').to_string())").stdout
    assert "dead" in table


def test_authenticate_row_says_what_is_missing(nb, sim):
    cell = nb.ok("%authenticate lab-k8s")
    assert "lab-k8s" in cell.text and "may run kernel pods" in cell.text
    sim.deny("create", "pods", "portforward")
    cell = nb.run("%authenticate lab-k8s")
    assert "missing permission to create pods/portforward" in cell.text + cell.stderr
