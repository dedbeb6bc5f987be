"""The ``kind: kubernetes`` profile schema: its keys, their checks, and the defaults.

Validating a profile imports this module and nothing heavier: no kubernetes client, no network.
Every check takes the raw YAML value and returns the cleaned value or raises ``InvalidArgument``
with a message that fits after "key 'k': ".
"""
from __future__ import annotations

import re
from typing import Any

from ...checks import Check, path, text, text_list
from ...errors import InvalidArgument

DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_WALLTIME_MIN = 120
DEFAULT_PYTHON = "python"
# The Jupyter Docker Stacks' non-root user and group ("jovyan", users).
DEFAULT_RUN_AS_USER = 1000
DEFAULT_RUN_AS_GROUP = 100
# Where runtime pods mount the resource's PersistentVolumeClaim (``storage_claim``).
DEFAULT_STORAGE_MOUNT = "/storage"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


def dns_label(value: Any) -> str:
    """A namespace name: a DNS-1123 label."""
    s = text(value)
    if len(s) > 63 or not DNS_LABEL.match(s):
        raise InvalidArgument(f"{s!r} is not a valid Kubernetes name (lower-case letters, digits, '-', at most 63)")
    return s


def dns_subdomain(value: Any) -> str:
    """A node, service account or Secret name: a DNS-1123 subdomain."""
    s = text(value)
    if len(s) > 253 or not DNS_SUBDOMAIN.match(s):
        raise InvalidArgument(f"{s!r} is not a valid Kubernetes name (lower-case letters, digits, '-', '.')")
    return s


def image(value: Any) -> str:
    """A container image reference (``registry/name:tag`` or ``name@sha256:...``)."""
    s = text(value)
    if len(s) > 512 or not _IMAGE.match(s):
        raise InvalidArgument(f"{s!r} is not a container image reference, e.g. quay.io/jupyter/base-notebook:latest")
    return s


def qualified_key(key: str) -> str:
    """A label key or extended resource name: ``[prefix/]name``."""
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 \
            or not _QUALIFIED_NAME.match(name):
        raise InvalidArgument(f"{key!r} is not a valid Kubernetes key ([prefix/]name, e.g. nvidia.com/gpu)")
    return key


def resource_name(value: Any) -> str:
    """An extended resource such as ``nvidia.com/gpu`` (the domain prefix is required)."""
    s = qualified_key(text(value))
    if "/" not in s:
        raise InvalidArgument(f"{s!r}: an extended resource needs a domain prefix, e.g. nvidia.com/gpu or amd.com/gpu")
    return s


def label_value_of(value: Any) -> str | None:
    """``value`` as a label value, or None if Kubernetes would reject it."""
    if isinstance(value, bool) or not (value is None or isinstance(value, (str, int, float))):
        return None
    s = "" if value is None else str(value)
    return s if len(s) <= 63 and LABEL_VALUE.match(s) else None


def node_selector(value: Any) -> dict[str, str]:
    """A mapping of node labels, e.g. ``{gpu: a100}``."""
    if not isinstance(value, dict):
        raise InvalidArgument("expected a mapping of node labels, e.g. {gpu: a100}")
    out = {}
    for k, v in value.items():
        key = qualified_key(text(k))
        val = label_value_of(v)
        if val is None:
            raise InvalidArgument(f"node_selector {key}: {v!r} is not a valid label value")
        out[key] = val
    return out


_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _toleration(i: int, t: dict[str, Any]) -> dict[str, Any]:
    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(f"toleration {i}: {why}")

    unknown = set(t) - _TOLERATION_KEYS
    if unknown:
        raise bad(f"unknown field {sorted(unknown)[0]!r}; use {', '.join(sorted(_TOLERATION_KEYS))}")
    op = t.get("operator", "Equal")
    if op not in ("Exists", "Equal"):
        raise bad(f"operator must be Exists or Equal, not {op!r}")
    tol: dict[str, Any] = {"operator": op}
    if "key" in t:
        tol["key"] = qualified_key(text(t["key"]))
    elif op != "Exists":
        raise bad("without a key the operator must be Exists")
    if "value" in t:
        if op == "Exists":
            raise bad("operator Exists takes no value")
        value = label_value_of(t["value"])
        if value is None:
            raise bad(f"bad value {t['value']!r}")
        tol["value"] = value
    if "effect" in t:
        if t["effect"] not in _EFFECTS:
            raise bad("effect must be NoSchedule, PreferNoSchedule or NoExecute")
        tol["effect"] = t["effect"]
    if "tolerationSeconds" in t:
        s = t["tolerationSeconds"]
        if isinstance(s, bool) or not isinstance(s, int) or s < 0 or tol.get("effect") != "NoExecute":
            raise bad("tolerationSeconds is a whole number and needs effect NoExecute")
        tol["tolerationSeconds"] = s
    return tol


def tolerations(value: Any) -> list[dict[str, Any]]:
    """A list of pod tolerations, e.g. ``[{key: nvidia.com/gpu, operator: Exists}]``."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidArgument("expected a list of tolerations, e.g. [{key: nvidia.com/gpu, operator: Exists}]")
    return [_toleration(i + 1, t) for i, t in enumerate(value)]


def uid(value: Any) -> int:
    """A non-root numeric user or group id."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
        raise InvalidArgument("expected a non-root numeric id (1 or more)")
    return value


def minutes(value: Any) -> int:
    """A whole number of minutes (at most a year)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60 * 24 * 365:
        raise InvalidArgument("expected a whole number of minutes")
    return value


def mount_path(value: Any) -> str:
    """An absolute path inside the container, e.g. ``/storage``."""
    s = text(value).rstrip("/")
    if not s.startswith("/") or "\\" in s or any(part in (".", "..") for part in s.split("/")) or "//" in s:
        raise InvalidArgument(f"{value!r} is not an absolute path in the container, e.g. /storage")
    return s


def storage_claim_of(settings: dict[str, Any]) -> tuple[str, str] | None:
    """``(claim, mount path)`` of a resource's validated settings, or None when it names no claim."""
    if not settings.get("storage_claim"):
        return None
    return settings["storage_claim"], settings.get("storage_mount", DEFAULT_STORAGE_MOUNT)


def names(value: Any) -> list[str]:
    """A list of Secret names (``image_pull_secrets``)."""
    return [dns_subdomain(v) for v in text_list(value)]


#: profile keys of a ``kind: kubernetes`` resource, each with its check
PROFILE_KEYS: dict[str, Check] = {
    "kubeconfig": path,  # default: $KUBECONFIG, else ~/.kube/config
    "context": text,  # kubeconfig context; in-cluster config when absent and running in a pod
    "namespace": dns_label,  # default: the context's namespace, else "default"
    "image": image,  # default image; --image overrides it
    "python": text,  # interpreter with ipykernel inside the image (default: python)
    "gpu_resource": resource_name,  # default nvidia.com/gpu
    "node_selector": node_selector,
    "tolerations": tolerations,
    "service_account": dns_subdomain,
    "image_pull_secrets": names,
    "run_as_user": uid,  # the image's non-root user (default 1000, as in Jupyter images)
    "run_as_group": uid,  # and group (default 100)
    "walltime": minutes,  # default walltime in minutes when none is requested (120)
    # A PersistentVolumeClaim in the namespace: every runtime pod mounts it at storage_mount, and
    # the storage location RESOURCE:/path names a path inside it.
    "storage_claim": dns_subdomain,
    "storage_mount": mount_path,  # default /storage
}
