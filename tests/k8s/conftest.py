"""Fixtures for the kubernetes backend: a Kubernetes API *simulator* (not a cluster) and
backends talking to it through the official client and a generated kubeconfig over HTTPS.

``cluster`` is parametrised: ``sim`` runs everywhere; ``real`` runs the same scenarios against
the cluster of ``$AIRAVATA_TEST_KUBECONFIG`` and is skipped (marked ``k8s_real``, never counted
as passing) when that is not set. See tests/k8s/README.md.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from airavata_magic.backends.base import Submission
from airavata_magic.backends.kubernetes import KubernetesBackend, label_value
from airavata_magic.profile import Resource
from airavata_magic.runtime import Observation, Runtime, RuntimeSpec, RuntimeState

from .simulator import Simulator

KERNEL_IMAGE = "sim/kernel:1"  # the simulator's image: this venv's python, with ipykernel
BROKEN_IMAGE = "sim/broken:1"  # a python that cannot start a kernel
REAL_KUBECONFIG = os.environ.get("AIRAVATA_TEST_KUBECONFIG")


def _broken_python(root: Path) -> Path:
    bindir = root / "broken-image-bin"
    bindir.mkdir(parents=True, exist_ok=True)
    py = bindir / "python"
    py.write_text("#!/bin/sh\necho \"$0: No module named ipykernel_launcher\" >&2\nexit 1\n")
    py.chmod(0o755)
    return bindir


class Cluster:
    """What a scenario needs from 'a cluster': settings for a resource, and ways to break things."""

    kind = "sim"

    def __init__(self, sim: Simulator | None, settings: dict[str, Any]) -> None:
        self.sim = sim
        self.settings = settings

    def pods(self, backend: KubernetesBackend) -> list[dict[str, Any]]:
        if self.sim is not None:
            return self.sim.pods(backend.namespace)
        mine = f"airavata-magic/owner={label_value(backend.owner)}"
        return backend.api.call("CoreV1Api", "list_namespaced_pod", backend.namespace, label_selector=mine)["items"]

    def secrets(self, backend: KubernetesBackend) -> list[dict[str, Any]]:
        if self.sim is not None:
            return self.sim.secrets(backend.namespace)
        mine = f"airavata-magic/owner={label_value(backend.owner)}"
        return backend.api.call("CoreV1Api", "list_namespaced_secret", backend.namespace, label_selector=mine)["items"]

    def delete_pod(self, backend: KubernetesBackend, name: str) -> None:
        """A deletion from outside airavata-magic (``kubectl delete pod``)."""
        if self.sim is not None:
            self.sim.delete_pod(name, backend.namespace)
        else:
            backend.api.call("CoreV1Api", "delete_namespaced_pod", name, backend.namespace, grace_period_seconds=1)

    def need_sim(self, what: str) -> Simulator:
        if self.sim is None:
            pytest.skip(f"k8s_real: {what} can only be caused on demand in the simulator")
        return self.sim


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    """A fresh simulator per test (starting one costs about 50 ms)."""
    s = Simulator(tmp_path / "sim", {KERNEL_IMAGE: str(Path(sys.executable).parent),
                                     BROKEN_IMAGE: str(_broken_python(tmp_path))}).start()
    yield s
    s.stop()


def _sim_cluster(s: Simulator) -> Cluster:
    return Cluster(s, {"kubeconfig": str(s.kubeconfig), "context": "sim", "image": KERNEL_IMAGE,
                       "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]})


@pytest.fixture
def sim_cluster(sim: Simulator) -> Cluster:
    """The simulator only: for scenarios that need its controls or that one run covers."""
    return _sim_cluster(sim)


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.k8s_real)])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if request.param == "sim":
        yield _sim_cluster(request.getfixturevalue("sim"))
        return
    if not REAL_KUBECONFIG:
        pytest.skip("k8s_real: set AIRAVATA_TEST_KUBECONFIG to run against a real cluster (tests/k8s/README.md)")
    settings: dict[str, Any] = {"kubeconfig": REAL_KUBECONFIG,
                                "image": os.environ.get("AIRAVATA_TEST_IMAGE", "quay.io/jupyter/base-notebook:latest")}
    for env, key in (("AIRAVATA_TEST_CONTEXT", "context"), ("AIRAVATA_TEST_NAMESPACE", "namespace")):
        if os.environ.get(env):
            settings[key] = os.environ[env]
    c = Cluster(None, settings)
    c.kind = "real"
    yield c


@pytest.fixture
def make_backend(tmp_path: Path) -> Iterator[Callable[..., KubernetesBackend]]:
    """``make_backend(cluster_or_settings, **overrides)``: a backend for a ``lab`` resource."""
    made: list[KubernetesBackend] = []

    def make(base: Cluster | dict[str, Any], **overrides: Any) -> KubernetesBackend:
        settings = dict(base.settings if isinstance(base, Cluster) else base)
        settings.update(overrides)
        root = tmp_path / "runtimes"
        b = KubernetesBackend(Resource("lab", "kubernetes", settings, "test"), lambda n: _private(root / n))
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()  # closes every port-forward too


def _private(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    return p


def runtime(name: str = "demo", **spec: Any) -> Runtime:
    return Runtime(name=name, resource="lab", kind="kubernetes", spec=RuntimeSpec(**spec))


def submit(backend: KubernetesBackend, rt: Runtime) -> Submission:
    """``backend.request(rt)``, its facts applied to the record as the manager applies them."""
    sub = backend.request(rt)
    rt.job_id, rt.state, rt.node, rt.reason = sub.job_id, sub.state, sub.node, sub.reason
    rt.backend_state = dict(sub.backend_state)
    return sub


def wait_for(backend: KubernetesBackend, rt: Runtime, until: Callable[[Observation], bool],
             timeout: float = 30.0) -> Observation:
    """Poll ``observe`` as the manager does until ``until(observation)``; the last observation."""
    deadline = time.monotonic() + timeout
    while True:
        ob = backend.observe([rt])[rt.name]
        if until(ob):
            return ob
        if time.monotonic() > deadline:
            raise AssertionError(f"{rt.name}: still {ob.state} ({ob.reason}) after {timeout} s\n{ob.log_tail}")
        if ob.state.terminal:
            raise AssertionError(f"{rt.name}: {ob.state} ({ob.reason})\n{ob.log_tail}")
        time.sleep(0.1)


def started(backend: KubernetesBackend, rt: Runtime, timeout: float = 120.0) -> Observation:
    ob = wait_for(backend, rt, lambda o: o.state == RuntimeState.STARTING and o.reason == "Running", timeout)
    rt.state = RuntimeState.STARTING
    return ob
