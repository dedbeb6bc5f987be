"""The ``kind: kubernetes`` profile schema (``backends/kubernetes/settings.py``): every key's
check, with the file, line and key in the message; and that validating a profile with a
Kubernetes resource imports no client library."""
from __future__ import annotations

import subprocess
import sys

import pytest

from airavata_magic.backends.kubernetes import settings as schema
from airavata_magic.errors import InvalidArgument, ProfileError
from airavata_magic.profile import parse_profile


# -- profile keys ----------------------------------------------------------------------------------------
GOOD_PROFILE = """\
resources:
  lab-k8s:
    kind: kubernetes
    context: lab
    namespace: research
    image: quay.io/jupyter/pytorch-notebook:cuda12-latest
    gpu_resource: nvidia.com/gpu
    node_selector: {gpu: a100}
    tolerations: [{key: nvidia.com/gpu, operator: Exists}]
"""


def test_contract_profile_example_is_accepted():
    res = parse_profile(GOOD_PROFILE, "p.yml").resources["lab-k8s"]
    assert res.settings["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert res.settings["node_selector"] == {"gpu": "a100"}


@pytest.mark.parametrize("line, key, message", [
    ("    namespace: Research_1", "namespace", "not a valid Kubernetes name"),
    ("    gpu_resource: gpu", "gpu_resource", "needs a domain prefix"),
    ("    image: 'bad image'", "image", "not a container image reference"),
    ("    node_selector: {gpu: 'a 100'}", "node_selector", "not a valid label value"),
    ("    tolerations: [{key: x, operator: Maybe}]", "tolerations", "operator must be Exists or Equal"),
    ("    tolerations: [{key: x, colour: red}]", "tolerations", "unknown field 'colour'"),
    ("    run_as_user: 0", "run_as_user", "non-root"),
    ("    storage_claim: Lab_Data", "storage_claim", "not a valid Kubernetes name"),
    ("    storage_mount: data", "storage_mount", "not an absolute path in the container"),
    ("    storage_mount: /a/../etc", "storage_mount", "not an absolute path in the container"),
    ("    replicas: 3", "replicas", "unknown key for a kubernetes resource"),
])
def test_bad_profile_keys_name_file_line_and_key(line, key, message):
    source = "resources:\n  lab:\n    kind: kubernetes\n" + line + "\n"
    with pytest.raises(ProfileError) as e:
        parse_profile(source, "p.yml")
    assert f"p.yml:4 key '{key}'" in str(e.value) and message in str(e.value)


def test_checks_clean_values_and_name_the_problem():
    assert schema.tolerations([{"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}]) == [
        {"operator": "Equal", "key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 5}]
    assert schema.node_selector({"zone": 3}) == {"zone": "3"}
    assert schema.names("regcred") == ["regcred"]
    for check, value, message in [
        (schema.tolerations, [{"operator": "Exists", "value": "x"}], "Exists takes no value"),
        (schema.tolerations, [{"key": "k", "tolerationSeconds": 5}], "needs effect NoExecute"),
        (schema.tolerations, [{"key": "k", "value": "a b"}], "bad value"),
        (schema.node_selector, ["gpu"], "expected a mapping"),
        (schema.minutes, 0, "whole number of minutes"),
        (schema.uid, True, "non-root"),
        (schema.dns_label, "x" * 64, "at most 63"),
    ]:
        with pytest.raises(InvalidArgument, match=message):
            check(value)


def test_validating_a_kubernetes_profile_imports_no_client_library():
    """Profile validation loads the schema only: not the kubernetes client, urllib3 or websocket."""
    code = (
        "import sys\n"
        "import airavata_magic.backends.kubernetes.settings\n"
        "from airavata_magic.profile import parse_profile\n"
        f"parse_profile({GOOD_PROFILE!r}, 'p.yml')\n"
        "import airavata_magic.backends.kubernetes\n"  # the whole package, backend class included
        "heavy = [m for m in ('kubernetes', 'urllib3', 'websocket', 'paramiko', 'zmq') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
