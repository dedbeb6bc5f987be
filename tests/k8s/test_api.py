"""``backends/kubernetes/api.py`` against the Kubernetes API simulator (not a cluster): failures
of the cluster become one-line ``BackendError``s; mistakes in our own calls are not disguised
as an unreachable API but surface as the errors they are."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from airavata_magic.backends.kubernetes.api import KubeApi
from airavata_magic.errors import BackendError

from .simulator import Simulator


def _api(sim: Simulator, **settings) -> KubeApi:
    return KubeApi("lab", "test", {"kubeconfig": str(sim.kubeconfig), "context": "sim", **settings})


def test_json_bodies_404_and_the_namespace(sim):
    api = _api(sim)
    assert api.namespace == "research"  # the context's namespace
    assert api.call("CoreV1Api", "read_namespaced_pod", "nope", "research", missing_ok=True) is None
    with pytest.raises(BackendError, match=r"^Kubernetes API \(lab\): .*\(HTTP 404\)$"):
        api.call("CoreV1Api", "read_namespaced_pod", "nope", "research")
    assert api.call("CoreV1Api", "list_namespaced_pod", "research")["items"] == []
    assert _api(sim, namespace="other").namespace == "other"
    api.close()


def test_a_mistake_in_our_own_call_is_not_reported_as_an_unreachable_cluster(sim):
    api = _api(sim)
    with pytest.raises((TypeError, ValueError), match="no_such_argument") as e:  # the client's own check
        api.call("CoreV1Api", "read_namespaced_pod", "p", "research", no_such_argument=1)
    assert not isinstance(e.value, BackendError)
    with pytest.raises(AttributeError):
        api.call("CoreV1Api", "no_such_method")
    api.close()


def test_an_unreachable_or_slow_api_server_is_one_line(sim, tmp_path: Path):
    away = tmp_path / "away-kubeconfig"
    away.write_text(sim.kubeconfig.read_text().replace(f":{sim.port}", ":1"))
    api = KubeApi("lab", "test", {"kubeconfig": str(away), "context": "sim"})
    with pytest.raises(BackendError, match="cannot reach the Kubernetes API at https://127.0.0.1:1") as e:
        api.call("CoreV1Api", "list_namespaced_pod", "research")
    assert "\n" not in str(e.value)
    assert api.node_exists("n1") is None  # cannot tell: the request goes ahead and reports it

    slow = _api(sim)
    sim.delay = 3.0
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach the Kubernetes API"):
        slow.call("CoreV1Api", "list_namespaced_pod", "research", timeout=0.3)
    assert time.monotonic() - t0 < 2.5  # one retry at most, each bounded by the timeout
    sim.delay = 0.0
    assert slow.node_exists("sim-gpu-1") is True and slow.node_exists("sim-gpu-9") is False
    slow.close()
