"""Every manifest the backend renders: pinned by golden files and validated offline against the
official schemas of pinned Kubernetes versions (``kubernetes-validate``, strict: unknown fields
are errors). Also: names, the container's shell loop, and purity of the rendering.

Regenerate the golden files after an intended change with ``AIRAVATA_UPDATE_GOLDEN=1``.
"""
from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from airavata_magic.backends.kubernetes.manifests import (
    KERNEL_PORTS, PodRequest, kernel_script, label_value, new_connection, pod_name, render_pod, render_secret,
)

GOLDEN = Path(__file__).parent / "golden"
# The oldest and the newest Kubernetes the manifests must be valid for.
PINNED_VERSIONS = ("1.29.0", "1.37.0")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

CPU = PodRequest(name=pod_name("analysis", "alice"), namespace="research", runtime="analysis", owner="alice",
                 image="quay.io/jupyter/base-notebook:2024-12-02", cpus=4, memory_mb=8192, walltime_min=60)
GPU = PodRequest(name=pod_name("My_GPU.run!", "alice@lab.edu"), namespace="research", runtime="My_GPU.run!",
                 owner="alice@lab.edu", image="quay.io/jupyter/pytorch-notebook:cuda12-latest",
                 python="/opt/conda/bin/python", cpus=8, memory_mb=32768, gpus=2, walltime_min=30,
                 node="gpu-node-7", node_selector={"gpu": "a100"},
                 tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 service_account="kernels", image_pull_secrets=["regcred"])
MINIMAL = PodRequest(name=pod_name("m", "bob"), namespace="default", runtime="m", owner="bob",
                     image="python:3.12-slim", gpu_resource="amd.com/gpu", gpus=1)
CLAIM = PodRequest(name=pod_name("c", "bob"), namespace="research", runtime="c", owner="bob",
                   image="python:3.12-slim", storage_claim="lab-data", storage_mount="/mnt/lab")
FIXED_KEY = "0123456789abcdef" * 4

CASES = {
    "pod-cpu": lambda: render_pod(CPU),
    "pod-gpu": lambda: render_pod(GPU),
    "pod-minimal": lambda: render_pod(MINIMAL),
    "pod-claim": lambda: render_pod(CLAIM),
    "secret": lambda: render_secret(CPU, new_connection(FIXED_KEY)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_matches_golden_file(case):
    text = yaml.safe_dump(CASES[case](), sort_keys=True, width=100)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("AIRAVATA_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{case} changed; if intended, regenerate with AIRAVATA_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("version", PINNED_VERSIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_is_valid_for_pinned_kubernetes(case, version):
    kubernetes_validate.validate(CASES[case](), version, strict=True)


def test_the_validator_does_reject_a_broken_pod():
    broken = render_pod(CPU)
    broken["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, PINNED_VERSIONS[0], strict=True)


def test_pod_is_locked_down_and_carries_no_secret():
    pod = render_pod(GPU)
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert c["resources"]["limits"] == {"cpu": "8", "memory": "32768Mi", "nvidia.com/gpu": "2"}
    assert c["resources"]["requests"] == c["resources"]["limits"]
    assert spec["activeDeadlineSeconds"] == 1800 and spec["nodeName"] == "gpu-node-7"
    assert spec["nodeSelector"] == {"gpu": "a100"} and spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert c["volumeMounts"] == [{"name": "kernel-connection", "mountPath": "/var/run/airavata", "readOnly": True}]
    assert spec["volumes"][0]["secret"] == {"secretName": GPU.name, "defaultMode": 0o440}
    assert c["command"][:3] == ["/bin/sh", "-c", c["command"][2]] and c["command"][3:] == [
        "/opt/conda/bin/python", "/var/run/airavata/connection.json"]
    labels = pod["metadata"]["labels"]
    assert labels["airavata-magic/runtime"] == GPU.name and labels["app.kubernetes.io/managed-by"] == "airavata-magic"
    assert labels["airavata-magic/owner"] == label_value("alice@lab.edu") != "alice@lab.edu"
    assert pod["metadata"]["annotations"]["airavata-magic/owner"] == "alice@lab.edu"
    # no key, no connection info anywhere in the pod: not in env, args or annotations
    text = json.dumps(pod)
    assert "key" not in json.dumps(c.get("env")) and str(KERNEL_PORTS["shell_port"]) not in text
    assert "automountServiceAccountToken" in spec and spec["serviceAccountName"] == "kernels"


def test_cpu_pod_has_no_gpu_and_no_service_account_token():
    spec = render_pod(CPU)["spec"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert "nvidia.com/gpu" not in spec["containers"][0]["resources"]["limits"]
    assert "nodeName" not in spec and "tolerations" not in spec


def test_secret_holds_the_connection_file_and_is_immutable():
    sec = render_secret(CPU, new_connection(FIXED_KEY))
    import base64

    conn = json.loads(base64.b64decode(sec["data"]["connection.json"]))
    assert conn["ip"] == "127.0.0.1" and conn["key"] == FIXED_KEY and conn["transport"] == "tcp"
    assert {k: conn[k] for k in KERNEL_PORTS} == KERNEL_PORTS
    assert sec["immutable"] is True and sec["type"] == "Opaque"
    assert len(new_connection()["key"]) == 64 and new_connection()["key"] != new_connection()["key"]


def test_rendering_is_pure():
    first = render_pod(GPU)
    again = copy.deepcopy(first)
    first["spec"]["containers"][0]["env"].append({"name": "X", "value": "y"})  # callers may mutate it
    assert render_pod(GPU) == again  # ... without changing the next rendering


# -- names ---------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=40))
def test_every_runtime_name_becomes_a_valid_unique_pod_name(name, owner):
    n = pod_name(name, owner)
    assert len(n) <= 63 and DNS_LABEL.match(n), n
    assert pod_name(name + "x", owner) != n and pod_name(name, owner + "x") != n
    v = label_value(owner)
    assert len(v) <= 63 and re.match(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$", v)


def test_names_normalise_readably():
    assert pod_name("My_GPU.run!", "alice").startswith("am-my-gpu-run-")
    assert pod_name("x_y", "alice") != pod_name("x.y", "alice")
    assert label_value("alice") == "alice"


# -- the container's shell loop (kernels/pod_kernel.sh) ---------------------------------------------------
def test_shell_loop_comes_from_its_template_without_comments():
    script = render_pod(CPU)["spec"]["containers"][0]["command"][2]
    assert script == kernel_script() and "#" not in script.split("trap", 1)[0]
    # the behaviours its comments promise: TERM passed on, INT ignored, restart only on exit 0
    assert script.startswith("trap 'stop=1; kill -TERM \"$pid\" 2>/dev/null' TERM\ntrap : INT\n")
    assert '"$0" -m ipykernel_launcher -f "$1"' in script and '[ "$code" -ne 0 ]' in script


def test_shell_loop_restarts_a_clean_exit_and_ends_on_a_failure(tmp_path):
    """Run the loop under a real /bin/sh with a fake python: exit 0 twice, then exit 3."""
    import subprocess

    count = tmp_path / "count"
    fake = tmp_path / "python"
    fake.write_text(f"""#!/bin/sh
n=$(cat {count} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {count}
[ "$n" -ge 3 ] && exit 3
exit 0
""")
    fake.chmod(0o755)
    proc = subprocess.run(["/bin/sh", "-c", kernel_script(), str(fake), "conn.json"], timeout=30)
    assert proc.returncode == 3 and count.read_text().strip() == "3"
