"""The pod and Secret of a runtime, rendered as plain dicts: pure functions, no API calls.

The fixed part of the pod is ``kernels/pod.yaml`` and its container command is
``kernels/pod_kernel.sh``; ``render_pod`` fills in the per-runtime values as data, never by
string substitution, so no profile value can change the manifest's structure.
"""
from __future__ import annotations

import base64
import copy
import functools
import getpass
import hashlib
import importlib.resources
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..base import PORT_NAMES
from .settings import (DEFAULT_GPU_RESOURCE, DEFAULT_PYTHON, DEFAULT_RUN_AS_GROUP, DEFAULT_RUN_AS_USER,
                       DEFAULT_STORAGE_MOUNT, DEFAULT_WALLTIME_MIN, LABEL_VALUE)

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUNTIME = "airavata-magic/runtime"
LABEL_OWNER = "airavata-magic/owner"
ANNOTATION_RUNTIME = "airavata-magic/runtime-name"
ANNOTATION_OWNER = "airavata-magic/owner"
CONTAINER = "kernel"
CONNECTION_VOLUME = "kernel-connection"
STORAGE_VOLUME = "storage"
CONNECTION_DIR = "/var/run/airavata"
CONNECTION_FILE = "connection.json"
# Fixed ports: every pod has its own network namespace, so fixed numbers never collide, and the
# port-forward can be opened before the kernel has started.
KERNEL_PORTS = dict(zip(PORT_NAMES, range(52801, 52806)))


# -- names ------------------------------------------------------------------------------------
def _digest(*parts: str, n: int = 8) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:n]


def pod_name(runtime: str, owner: str) -> str:
    """The pod (and Secret) name of a runtime: a DNS-1123 label unique per owner and runtime.

    Runtime names may hold characters Kubernetes rejects (``My_GPU.run!``); they are lowered,
    runs of other characters become ``-``, and a hash of the exact owner and name keeps two
    names that normalise alike (``a_b``, ``a.b``) or two users' runtimes apart.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", runtime.lower()).strip("-")[:40].strip("-")
    digest = _digest(owner, runtime)
    return f"am-{slug}-{digest}" if slug else f"am-{digest}"


def label_value(value: str) -> str:
    """``value`` if Kubernetes accepts it as a label value, else a safe form with a hash."""
    if len(value) <= 63 and LABEL_VALUE.match(value):
        return value
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")[:50].strip("-_.")
    return f"{slug}-{_digest(value)}" if slug else _digest(value)


def default_owner() -> str:
    """Who owns the pods this process creates: the local user name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers): still a stable identity per uid
        return f"uid{os.getuid()}"


def owner_selector(owner: str) -> str:
    """The label selector of every pod (and Secret) this owner's runtimes have."""
    return f"{MANAGED_BY}=airavata-magic,{LABEL_OWNER}={label_value(owner)}"


# -- templates (kernels/) ---------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _template_text(name: str) -> str:
    return importlib.resources.files("airavata_magic.kernels").joinpath(name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=None)
def _pod_template() -> dict[str, Any]:
    return yaml.safe_load(_template_text("pod.yaml"))


def kernel_script() -> str:
    """The container's shell loop (``kernels/pod_kernel.sh``) without its comment lines."""
    lines = _template_text("pod_kernel.sh").splitlines(keepends=True)
    return "".join(ln for ln in lines if not ln.lstrip().startswith("#"))


# -- rendering --------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodRequest:
    """Everything that decides a runtime's pod and Secret."""

    name: str  # pod and Secret name (``pod_name``)
    namespace: str
    runtime: str  # the user's runtime name, unchanged
    owner: str
    image: str
    python: str = DEFAULT_PYTHON
    cpus: int | None = None
    memory_mb: int | None = None
    gpus: int = 0
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    walltime_min: int | None = DEFAULT_WALLTIME_MIN
    node: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    service_account: str | None = None
    image_pull_secrets: list[str] = field(default_factory=list)
    run_as_user: int = DEFAULT_RUN_AS_USER
    run_as_group: int = DEFAULT_RUN_AS_GROUP
    storage_claim: str | None = None  # a PersistentVolumeClaim mounted at storage_mount
    storage_mount: str = DEFAULT_STORAGE_MOUNT


def _labels(req: PodRequest) -> dict[str, str]:
    return {LABEL_RUNTIME: req.name, LABEL_OWNER: label_value(req.owner)}


def render_pod(req: PodRequest) -> dict[str, Any]:
    """The pod manifest of a runtime (a pure function of ``req`` and the templates in ``kernels/``)."""
    pod = copy.deepcopy(_pod_template())  # the cached template itself is never changed
    meta, spec = pod["metadata"], pod["spec"]
    meta["name"] = req.name
    meta["namespace"] = req.namespace
    meta["labels"].update(_labels(req))
    meta["annotations"] = {ANNOTATION_RUNTIME: req.runtime, ANNOTATION_OWNER: req.owner}
    spec["securityContext"].update(runAsUser=req.run_as_user, runAsGroup=req.run_as_group, fsGroup=req.run_as_group)
    (container,) = spec["containers"]
    container["image"] = req.image
    container["command"] = ["/bin/sh", "-c", kernel_script(), req.python, f"{CONNECTION_DIR}/{CONNECTION_FILE}"]
    resources = container_resources(req)
    if resources:
        container["resources"] = resources
    spec["volumes"][0]["secret"]["secretName"] = req.name
    if req.storage_claim:
        spec["volumes"].append({"name": STORAGE_VOLUME, "persistentVolumeClaim": {"claimName": req.storage_claim}})
        container.setdefault("volumeMounts", []).append({"name": STORAGE_VOLUME, "mountPath": req.storage_mount})
    place(spec, req)
    return pod


def container_resources(req: PodRequest) -> dict[str, Any]:
    """The container's ``resources`` ({} when nothing is asked). requests == limits: the pod gets
    the Guaranteed QoS class when cpu and memory are both given, and extended resources (GPUs)
    must have equal requests and limits anyway."""
    requests: dict[str, str] = {}
    if req.cpus:
        requests["cpu"] = str(req.cpus)
    if req.memory_mb:
        requests["memory"] = f"{req.memory_mb}Mi"
    if req.gpus:
        requests[req.gpu_resource] = str(req.gpus)
    return {"requests": dict(requests), "limits": dict(requests)} if requests else {}


def place(spec: dict[str, Any], req: PodRequest) -> None:
    """Fill a pod spec's deadline, node, selector, tolerations, service account and pull secrets
    (runtime pods and the pods of task Jobs alike)."""
    if req.walltime_min:
        spec["activeDeadlineSeconds"] = req.walltime_min * 60
    if req.node:
        spec["nodeName"] = req.node
    if req.node_selector:
        spec["nodeSelector"] = dict(req.node_selector)
    if req.tolerations:
        spec["tolerations"] = copy.deepcopy(req.tolerations)
    if req.service_account:
        spec["serviceAccountName"] = req.service_account
        spec["automountServiceAccountToken"] = True  # naming an account means wanting its token
    if req.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in req.image_pull_secrets]


def render_secret(req: PodRequest, connection: dict[str, Any]) -> dict[str, Any]:
    """The Secret carrying the kernel's connection file (kernel side: ip is the pod's loopback)."""
    body = json.dumps(connection, indent=1, sort_keys=True).encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": req.name,
            "namespace": req.namespace,
            "labels": {MANAGED_BY: "airavata-magic", **_labels(req)},
            "annotations": {ANNOTATION_RUNTIME: req.runtime, ANNOTATION_OWNER: req.owner},
        },
        "type": "Opaque",
        "immutable": True,
        "data": {CONNECTION_FILE: base64.b64encode(body).decode()},
    }


def new_connection(key: str | None = None) -> dict[str, Any]:
    """Kernel-side connection info: the pod's loopback, fixed ports, a fresh key."""
    return {
        "ip": "127.0.0.1",
        "transport": "tcp",
        **KERNEL_PORTS,
        "key": key or secrets.token_hex(32),
        "signature_scheme": "hmac-sha256",
        "kernel_name": "",
    }


def owner_reference(pod: dict[str, Any]) -> dict[str, Any]:
    """An ownerReference to ``pod``: its dependents are garbage-collected with it."""
    return {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}


def secret_name_of(pod: dict[str, Any]) -> str:
    """The name of the Secret a pod mounts its connection file from."""
    for volume in pod.get("spec", {}).get("volumes", []):
        if volume.get("name") == CONNECTION_VOLUME and volume.get("secret"):
            return volume["secret"]["secretName"]
    return pod["metadata"]["name"]


def read_connection(secret: dict[str, Any]) -> dict[str, Any]:
    """The kernel's connection file from its Secret. Raises KeyError/ValueError/TypeError when
    the Secret does not hold one."""
    return json.loads(base64.b64decode(secret["data"][CONNECTION_FILE]))
