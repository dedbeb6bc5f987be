"""Kubernetes runtimes: one pod per runtime, reached through the API server's port-forward.

How a runtime is built (see ``kernels/pod.yaml`` for the fixed part of the pod):

1. a Secret holding the kernel's connection file (fixed ports, a key from ``secrets``);
2. the pod, which mounts that Secret read-only and starts ``ipykernel`` bound to its loopback;
3. the Secret gets an ownerReference to the pod, so Kubernetes deletes it with the pod even when
   nobody calls ``%stop_runtime`` (``stop()`` also deletes it explicitly).

The kernel's five ports are reached through ``transport.portforward.PodPortForward``. Pod
phase, container states and the pod's events are mapped to runtime states by the pure function
``observation_from_pod``; failures that will not fix themselves (Unschedulable, image pull
errors, CrashLoopBackOff, OOMKilled, deletion from outside, the deadline) end a wait at once.

The kubernetes client is imported lazily, and responses are read as plain JSON dicts
(``_preload_content=False``): the same shapes the manifests are written in, and no cost of
building model objects on every poll.
"""
from __future__ import annotations

import base64
import copy
import getpass
import hashlib
import importlib.resources
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from .. import paths, secret_values
from ..errors import BackendError, InvalidArgument
from ..checks import path, text, text_list
from ..runtime import Observation, Runtime, RuntimeState
from .base import AuthResult, Backend, ConnectionInfo, Resource

# -- fixed facts about the pod ----------------------------------------------------------------
MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUNTIME = "airavata-magic/runtime"
LABEL_OWNER = "airavata-magic/owner"
ANNOTATION_RUNTIME = "airavata-magic/runtime-name"
ANNOTATION_OWNER = "airavata-magic/owner"
CONTAINER = "kernel"
CONNECTION_DIR = "/var/run/airavata"
CONNECTION_FILE = "connection.json"
# Fixed ports: every pod has its own network namespace, so fixed numbers never collide, and the
# port-forward can be opened before the kernel has started.
KERNEL_PORTS = {"shell_port": 52801, "iopub_port": 52802, "stdin_port": 52803, "control_port": 52804, "hb_port": 52805}
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_WALLTIME_MIN = 120

# The container's command: ``sh -c SCRIPT PYTHON CONNECTION_FILE``. A kernel that shuts down
# cleanly (exit 0: %restart_runtime, or ``exit()`` in a cell) is started again at once in the
# same pod; any other exit ends the container, so the kubelet reports it (restart count, exit
# code, OOMKilled) and a kernel that cannot start becomes CrashLoopBackOff. SIGTERM from a pod
# deletion is passed on to the kernel (PID 1 would ignore it otherwise). SIGINT is caught and
# ignored: ipykernel 6 interrupts a cell by signalling its whole process group, shell included
# (7 signals only itself unless it leads the group), and an interrupt must not end the shell;
# the inner loop waits again while the kernel lives.
KERNEL_SCRIPT = (
    'trap \'stop=1; kill -TERM "$pid" 2>/dev/null\' TERM\n'
    "trap : INT\n"
    "while :; do\n"
    '  "$0" -m ipykernel_launcher -f "$1" & pid=$!\n'
    '  while kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done\n'
    '  if [ -n "${stop:-}" ] || [ "$code" -ne 0 ]; then exit "$code"; fi\n'
    "done\n"
)

# Container waiting reasons that never fix themselves without the user changing something.
FATAL_WAITING = {
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")


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
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")[:50].strip("-_.")
    return f"{slug}-{_digest(value)}" if slug else _digest(value)


def default_owner() -> str:
    """Who owns the pods this process creates: the local user name."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (some containers): still a stable identity per uid
        return f"uid{os.getuid()}"


# -- profile validators -----------------------------------------------------------------------
def _dns_label(value: Any) -> str:
    s = text(value)
    if len(s) > 63 or not _DNS_LABEL.match(s):
        raise ValueError(f"{s!r} is not a valid Kubernetes name (lower-case letters, digits, '-', at most 63)")
    return s


def _dns_subdomain(value: Any) -> str:
    s = text(value)
    if len(s) > 253 or not _DNS_SUBDOMAIN.match(s):
        raise ValueError(f"{s!r} is not a valid Kubernetes name (lower-case letters, digits, '-', '.')")
    return s


def _image(value: Any) -> str:
    s = text(value)
    if len(s) > 512 or not _IMAGE.match(s):
        raise ValueError(f"{s!r} is not a container image reference, e.g. quay.io/jupyter/base-notebook:latest")
    return s


def _qualified_key(key: str) -> str:
    """A label key or extended resource name: ``[prefix/]name``."""
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        raise ValueError(f"{key!r} is not a valid Kubernetes key ([prefix/]name, e.g. nvidia.com/gpu)")
    return key


def _resource_name(value: Any) -> str:
    s = _qualified_key(text(value))
    if "/" not in s:
        raise ValueError(f"{s!r}: an extended resource needs a domain prefix, e.g. nvidia.com/gpu or amd.com/gpu")
    return s


def _node_selector(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("expected a mapping of node labels, e.g. {gpu: a100}")
    out = {}
    for k, v in value.items():
        key = _qualified_key(text(k))
        val = "" if v is None else str(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None
        if val is None or len(val) > 63 or not _LABEL_VALUE.match(val):
            raise ValueError(f"node_selector {key}: {v!r} is not a valid label value")
        out[key] = val
    return out


_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}


def _tolerations(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError("expected a list of tolerations, e.g. [{key: nvidia.com/gpu, operator: Exists}]")
    out = []
    for i, t in enumerate(value):
        unknown = set(t) - _TOLERATION_KEYS
        if unknown:
            raise ValueError(f"toleration {i + 1}: unknown field {sorted(unknown)[0]!r}; use {', '.join(sorted(_TOLERATION_KEYS))}")
        tol: dict[str, Any] = {}
        op = t.get("operator", "Equal")
        if op not in ("Exists", "Equal"):
            raise ValueError(f"toleration {i + 1}: operator must be Exists or Equal, not {op!r}")
        tol["operator"] = op
        if "key" in t:
            tol["key"] = _qualified_key(text(t["key"]))
        elif op != "Exists":
            raise ValueError(f"toleration {i + 1}: without a key the operator must be Exists")
        if "value" in t:
            if op == "Exists":
                raise ValueError(f"toleration {i + 1}: operator Exists takes no value")
            tol["value"] = _LABEL_VALUE.match(str(t["value"])) and str(t["value"]) or _bad(f"toleration {i + 1}: bad value {t['value']!r}")
        if "effect" in t:
            if t["effect"] not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
                raise ValueError(f"toleration {i + 1}: effect must be NoSchedule, PreferNoSchedule or NoExecute")
            tol["effect"] = t["effect"]
        if "tolerationSeconds" in t:
            s = t["tolerationSeconds"]
            if isinstance(s, bool) or not isinstance(s, int) or s < 0 or tol.get("effect") != "NoExecute":
                raise ValueError(f"toleration {i + 1}: tolerationSeconds is a whole number and needs effect NoExecute")
            tol["tolerationSeconds"] = s
        out.append(tol)
    return out


def _bad(message: str) -> Any:
    raise ValueError(message)


def _uid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
        raise ValueError("expected a non-root numeric id (1 or more)")
    return value


def _minutes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60 * 24 * 365:
        raise ValueError("expected a whole number of minutes")
    return value


def _names(value: Any) -> list[str]:
    return [_dns_subdomain(v) for v in text_list(value)]


# -- rendering (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class PodRequest:
    """Everything that decides a runtime's pod and Secret."""

    name: str  # pod and Secret name (``pod_name``)
    namespace: str
    runtime: str  # the user's runtime name, unchanged
    owner: str
    image: str
    python: str = "python"
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
    run_as_user: int = 1000
    run_as_group: int = 100


def _template() -> dict[str, Any]:
    source = importlib.resources.files("airavata_magic.kernels").joinpath("pod.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(source)


_TEMPLATE: dict[str, Any] | None = None


def _labels(req: PodRequest) -> dict[str, str]:
    return {LABEL_RUNTIME: req.name, LABEL_OWNER: label_value(req.owner)}


def render_pod(req: PodRequest) -> dict[str, Any]:
    """The pod manifest of a runtime (a pure function of ``req`` and ``kernels/pod.yaml``)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = _template()
    pod = copy.deepcopy(_TEMPLATE)
    meta, spec = pod["metadata"], pod["spec"]
    meta["name"] = req.name
    meta["namespace"] = req.namespace
    meta["labels"].update(_labels(req))
    meta["annotations"] = {ANNOTATION_RUNTIME: req.runtime, ANNOTATION_OWNER: req.owner}
    spec["securityContext"].update(runAsUser=req.run_as_user, runAsGroup=req.run_as_group, fsGroup=req.run_as_group)
    (container,) = spec["containers"]
    container["image"] = req.image
    container["command"] = ["/bin/sh", "-c", KERNEL_SCRIPT, req.python, f"{CONNECTION_DIR}/{CONNECTION_FILE}"]
    requests: dict[str, str] = {}
    if req.cpus:
        requests["cpu"] = str(req.cpus)
    if req.memory_mb:
        requests["memory"] = f"{req.memory_mb}Mi"
    if req.gpus:
        requests[req.gpu_resource] = str(req.gpus)
    if requests:
        # requests == limits: the pod gets the Guaranteed QoS class when cpu and memory are both
        # given, and extended resources (GPUs) must have equal requests and limits anyway.
        container["resources"] = {"requests": dict(requests), "limits": dict(requests)}
    spec["volumes"][0]["secret"]["secretName"] = req.name
    if req.walltime_min:
        spec["activeDeadlineSeconds"] = req.walltime_min * 60
    if req.node:
        spec["nodeName"] = req.node
    if req.node_selector:
        spec["nodeSelector"] = dict(req.node_selector)
    if req.tolerations:
        spec["tolerations"] = [dict(t) for t in req.tolerations]
    if req.service_account:
        spec["serviceAccountName"] = req.service_account
        spec["automountServiceAccountToken"] = True  # naming an account means wanting its token
    if req.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in req.image_pull_secrets]
    return pod


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


# -- observing (pure) -------------------------------------------------------------------------
def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _event_time(ev: dict[str, Any]) -> float:
    return (_ts(ev.get("lastTimestamp")) or _ts(ev.get("eventTime")) or _ts(ev.get("firstTimestamp"))
            or _ts(ev.get("metadata", {}).get("creationTimestamp")) or 0.0)


def format_events(events: Iterable[dict[str, Any]], limit: int = 6) -> str:
    """The latest events, oldest first, one line each: ``HH:MM:SS Warning FailedScheduling: msg``."""
    evs = sorted(events, key=_event_time)[-limit:]
    lines = []
    for ev in evs:
        when = time.strftime("%H:%M:%S", time.localtime(_event_time(ev))) if _event_time(ev) else "--:--:--"
        count = f" (x{ev['count']})" if (ev.get("count") or 1) > 1 else ""
        lines.append(f"{when} {ev.get('type', 'Normal')} {ev.get('reason', '')}: {ev.get('message', '')}{count}")
    return "\n".join(lines)


def _latest(events: list[dict[str, Any]], reason: str | None = None, type_: str | None = None) -> dict[str, Any] | None:
    picked = [e for e in events if (reason is None or e.get("reason") == reason) and (type_ is None or e.get("type") == type_)]
    # stable sort: of events in the same second (timestamps have whole seconds), the later one
    return sorted(picked, key=_event_time)[-1] if picked else None


def observation_from_pod(
    pod: dict[str, Any] | None,
    events: list[dict[str, Any]],
    *,
    was_ready: bool,
    expected_restarts: int = 0,
    pod_label: str = "",
) -> Observation:
    """Map a pod (or its absence) and its events to a runtime state, with the reason to show.

    ``was_ready``: the kernel has answered before, so a lost kernel is DEAD rather than FAILED.
    ``expected_restarts``: kernel-container restarts we caused; more means the kernel died.
    """
    lost = RuntimeState.DEAD if was_ready else RuntimeState.FAILED
    log = format_events(events)
    if pod is None:
        return Observation(lost, f"pod {pod_label} was deleted outside airavata-magic", log_tail=log)
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
    name = meta.get("name", pod_label)
    node = spec.get("nodeName")
    phase = status.get("phase", "Pending")
    started = _ts(status.get("startTime"))
    deadline = spec.get("activeDeadlineSeconds")
    ends_at = started + deadline if started and deadline else None

    def obs(state: RuntimeState, reason: str) -> Observation:
        return Observation(state, reason, node=node, log_tail=log, ends_at=ends_at)

    if meta.get("deletionTimestamp"):
        killing = _latest(events, "Killing")
        return obs(lost, f"pod {name} is being deleted outside airavata-magic" + (f" ({killing['message']})" if killing else ""))
    if phase == "Failed" and status.get("reason") == "DeadlineExceeded":
        return obs(RuntimeState.EXPIRED, f"walltime reached: {status.get('message') or 'pod deadline exceeded'}")
    cs = next((c for c in status.get("containerStatuses") or [] if c.get("name") == CONTAINER), {})
    state, last = cs.get("state") or {}, cs.get("lastState") or {}
    if phase in ("Failed", "Succeeded"):
        term = state.get("terminated") or last.get("terminated") or {}
        why = status.get("message") or status.get("reason") or _termination(term) or f"pod {phase}"
        return obs(lost, f"pod {name} {phase.lower()}: {why}")
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in FATAL_WAITING:
        term = _termination(last.get("terminated") or {})
        msg = waiting.get("message") or _latest_warning_message(events) or ""
        detail = f"{waiting['reason']}: {msg}".rstrip(": ")
        if waiting["reason"] == "CrashLoopBackOff" and term:
            detail += f" (last exit: {term})"
        return obs(lost, detail)
    restarts = int(cs.get("restartCount") or 0)
    if restarts > expected_restarts and last.get("terminated"):
        return obs(lost, f"the kernel container restarted: {_termination(last['terminated'])}")
    if state.get("terminated"):
        return obs(lost, f"the kernel container exited: {_termination(state['terminated'])}")
    if phase == "Pending":
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            scaling = _latest(events, "TriggeredScaleUp")
            failed = _latest(events, "FailedScheduling")
            message = (failed or {}).get("message") or cond.get("message") or "no node can run this pod"
            if scaling and _event_time(scaling) >= _event_time(failed or {}):
                # the cluster autoscaler is adding a node: this one is worth waiting for
                return obs(RuntimeState.QUEUED, f"Pending: {scaling.get('message', 'scale-up triggered')}")
            return obs(RuntimeState.FAILED, f"Unschedulable: {message}")
        latest = _latest(events)
        now = f"{latest['reason']}: {latest['message']}" if latest else ("waiting for a node" if not node else "starting")
        return obs(RuntimeState.STARTING if node else RuntimeState.QUEUED, f"Pending: {now}")
    if phase == "Running":
        return obs(RuntimeState.STARTING, "Running")
    return obs(RuntimeState.QUEUED, f"{phase}")


def _latest_warning_message(events: list[dict[str, Any]]) -> str | None:
    ev = _latest(events, type_="Warning")
    return ev.get("message") if ev else None


def _termination(term: dict[str, Any]) -> str:
    if not term:
        return ""
    reason = term.get("reason") or "Error"
    code = term.get("exitCode")
    if reason == "OOMKilled":
        return f"OOMKilled (exit code {code}): the kernel used more memory than the pod's limit; request more with --memory"
    msg = f": {term['message'].strip()}" if term.get("message") else ""
    return f"{reason} (exit code {code}){msg}"


# -- the backend ------------------------------------------------------------------------------
class KubernetesBackend(Backend):
    """Runtimes as pods on a Kubernetes cluster (kubeconfig context or in-cluster config)."""

    kind = "kubernetes"
    profile_keys = {
        "kubeconfig": path,  # default: $KUBECONFIG, else ~/.kube/config
        "context": text,  # kubeconfig context; in-cluster config when absent and running in a pod
        "namespace": _dns_label,  # default: the context's namespace, else "default"
        "image": _image,  # default image; --image overrides it
        "python": text,  # interpreter with ipykernel inside the image (default: python)
        "gpu_resource": _resource_name,  # default nvidia.com/gpu
        "node_selector": _node_selector,
        "tolerations": _tolerations,
        "service_account": _dns_subdomain,
        "image_pull_secrets": _names,
        "run_as_user": _uid,  # the image's non-root user (default 1000, as in Jupyter images)
        "run_as_group": _uid,  # and group (default 100)
        "walltime": _minutes,  # default walltime in minutes when none is requested (120)
    }
    poll_interval = 0.5
    # seconds for any one API call; a cluster that does not answer is an error, not a hang
    request_timeout: float = 15.0
    # seconds between pod checks while a cell runs (kernel_alive)
    alive_interval: float = 2.0
    # seconds the API may be unreachable before observe() gives up
    api_grace: float = 30.0

    def __init__(self, resource: Resource, runtime_dir: Callable[[str], Any]) -> None:
        super().__init__(resource, runtime_dir)
        self.settings = resource.settings
        self.owner = default_owner()
        self._lock = threading.Lock()
        self._client: Any = None
        self._namespace: str | None = None
        self._forwards: dict[str, Any] = {}  # runtime name -> PodPortForward
        self._alive: dict[str, tuple[float, bool]] = {}  # runtime name -> (checked at, alive)
        self._api_down_since: float | None = None

    # -- API plumbing ------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        self._api()
        if self._namespace is None:
            raise BackendError(f"resource {self.resource.name!r}: no Kubernetes namespace could be determined; "
                               "set namespace: in the profile")
        return self._namespace

    def _api(self) -> Any:
        """The shared ``ApiClient`` (created on first use)."""
        with self._lock:
            if self._client is None:
                self._client, self._namespace = self._connect()
            return self._client

    def _connect(self) -> tuple[Any, str]:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        context = self.settings.get("context")
        kubeconfig = self.settings.get("kubeconfig")
        in_cluster = not context and not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST")
        where = f"resource {self.resource.name!r} ({self.resource.source})"
        try:
            if in_cluster:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                ns_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
                default_ns = Path(ns_file).read_text().strip() if os.path.exists(ns_file) else "default"
            else:
                cfg_file = os.path.expanduser(kubeconfig) if kubeconfig else None
                cfg = client.Configuration()
                config.load_kube_config(config_file=cfg_file, context=context, client_configuration=cfg)
                contexts, current = config.list_kube_config_contexts(config_file=cfg_file)
                ctx = next((c for c in contexts if c["name"] == context), current) if context else current
                default_ns = ((ctx or {}).get("context") or {}).get("namespace") or "default"
        except ConfigException as e:
            raise BackendError(f"{where}: cannot load the Kubernetes configuration: {e}; check kubeconfig: and context:") from None
        except (OSError, ValueError, TypeError) as e:
            raise BackendError(f"{where}: cannot read the kubeconfig: {e}") from None
        cfg.retries = 1
        return client.ApiClient(cfg), self.settings.get("namespace") or default_ns

    def _call(self, api: str, method: str, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Call ``CoreV1Api``/``AuthorizationV1Api`` ``method``; the JSON body as dicts.

        Returns None for 404 when ``missing_ok``. Every other failure is a one-line BackendError.
        """
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api_client = self._api()
        target = getattr(getattr(client, api)(api_client), method)
        try:
            resp = target(*args, _preload_content=False, _request_timeout=self.request_timeout, **kwargs)
            data = resp.data
        except ApiException as e:
            if e.status == 404 and missing_ok:
                return None
            raise BackendError(self._api_error(e)) from None
        except Exception as e:  # urllib3 connection/timeout/TLS errors
            raise BackendError(f"cannot reach the Kubernetes API at {api_client.configuration.host} "
                               f"for resource {self.resource.name!r}: {_short(e)}") from None
        if method.startswith("read_namespaced_pod_log"):
            return data.decode("utf-8", "replace")
        return json.loads(data) if data else {}

    def _api_error(self, e: Any) -> str:
        try:
            message = json.loads(e.body).get("message") or e.reason
        except (TypeError, ValueError, AttributeError):
            message = e.reason or str(e.status)
        hint = {401: "; the kubeconfig's credentials were rejected: log in again or refresh the token",
                403: "; run %authenticate to see which permission is missing"}.get(e.status, "")
        return f"Kubernetes API ({self.resource.name}): {message} (HTTP {e.status}){hint}"

    # -- lifecycle -----------------------------------------------------------------------------
    def pod_request(self, runtime: Runtime) -> PodRequest:
        """What the pod of ``runtime`` will be, from the profile and the runtime's spec."""
        s, spec = self.settings, runtime.spec
        image = spec.image or s.get("image")
        if not image:
            raise InvalidArgument(f"resource {self.resource.name!r} has no image: set image: in the profile or pass --image")
        try:
            image = _image(image)
        except ValueError as e:
            raise InvalidArgument(f"invalid --image: {e}") from None
        node = spec.node
        if node is not None:
            try:
                node = _dns_subdomain(node)
            except ValueError as e:
                raise InvalidArgument(f"invalid --node: {e}") from None
        if spec.partition:
            raise InvalidArgument("a kubernetes resource has no partitions; use node_selector: in the profile or --node")
        return PodRequest(
            name=pod_name(runtime.name, self.owner),
            namespace=self.namespace,
            runtime=runtime.name,
            owner=self.owner,
            image=image,
            python=s.get("python", "python"),
            cpus=spec.cpus,
            memory_mb=spec.memory,
            gpus=spec.gpus or 0,
            gpu_resource=s.get("gpu_resource", DEFAULT_GPU_RESOURCE),
            walltime_min=spec.walltime or s.get("walltime", DEFAULT_WALLTIME_MIN),
            node=node,
            node_selector=s.get("node_selector", {}),
            tolerations=s.get("tolerations", []),
            service_account=s.get("service_account"),
            image_pull_secrets=s.get("image_pull_secrets", []),
            run_as_user=s.get("run_as_user", 1000),
            run_as_group=s.get("run_as_group", 100),
        )

    def request(self, runtime: Runtime) -> None:
        req = self.pod_request(runtime)
        ns = req.namespace
        if req.node:
            self._check_node(req.node)
        existing = self._call("CoreV1Api", "read_namespaced_pod", req.name, ns, missing_ok=True)
        if existing is not None:
            # A pod that is going away, or that failed for good, is what is left of an earlier
            # runtime of this name: replace it. A live one is somebody's kernel: refuse.
            if existing["metadata"].get("deletionTimestamp") or \
                    observation_from_pod(existing, [], was_ready=False).state.terminal:
                self._delete(ns, req.name, wait=True)
            else:
                phase = (existing.get("status") or {}).get("phase", "?")
                raise BackendError(f"pod {req.name} for runtime {runtime.name!r} already exists ({phase}); "
                                   f"%attach_runtime {runtime.name} or %stop_runtime {runtime.name}")
        # A Secret left by a pod that is gone (e.g. a crash between the two creates) is stale.
        self._call("CoreV1Api", "delete_namespaced_secret", req.name, ns, missing_ok=True)
        self._call("CoreV1Api", "create_namespaced_secret", ns, render_secret(req, new_connection()))
        try:
            pod = self._call("CoreV1Api", "create_namespaced_pod", ns, render_pod(req))
        except BackendError:
            self._call("CoreV1Api", "delete_namespaced_secret", req.name, ns, missing_ok=True)
            raise
        # Tie the Secret to the pod so Kubernetes deletes it with the pod, whoever deletes it.
        try:
            self._call("CoreV1Api", "patch_namespaced_secret", req.name, ns,
                       {"metadata": {"ownerReferences": [owner_reference(pod)]}},
                       _content_type="application/merge-patch+json")
        except BackendError:
            self._delete(ns, req.name, wait=False)  # no runtime record will point at them
            raise
        runtime.job_id = req.name
        runtime.state = RuntimeState.QUEUED
        runtime.node = req.node
        runtime.backend_state = {"pod": req.name, "namespace": ns, "uid": pod["metadata"]["uid"], "restarts": 0}

    def _check_node(self, node: str) -> None:
        """A pod bound to a node that does not exist stays Pending for ever: say so now.
        Users often may not read nodes (cluster scope); then the pod's events must tell."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            client.CoreV1Api(self._api()).read_node(node, _preload_content=False, _request_timeout=self.request_timeout)
        except ApiException as e:
            if e.status == 404:
                raise InvalidArgument(f"--node {node}: the cluster has no node of that name") from None
        except Exception:
            pass  # unreachable API: the create that follows reports it

    def estimate_start(self, runtime: Runtime) -> float | None:
        """Ask the API server to admit the pod without creating it (``dryRun=All``: validation,
        quotas, pod security admission); refused means it can never start here. When it would
        be scheduled is not knowable without the cluster's nodes and queue: None (unknown)."""
        req = self.pod_request(runtime)
        try:
            self._call("CoreV1Api", "create_namespaced_pod", req.namespace, render_pod(req), dry_run="All")
        except BackendError as e:
            raise BackendError(f"the cluster would not accept this pod: {e}") from None
        return None

    def _pods(self, namespace: str) -> dict[str, dict[str, Any]]:
        selector = f"{MANAGED_BY}=airavata-magic,{LABEL_OWNER}={label_value(self.owner)}"
        listing = self._call("CoreV1Api", "list_namespaced_pod", namespace, label_selector=selector)
        return {p["metadata"]["name"]: p for p in listing.get("items", [])}

    def _events(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        listing = self._call("CoreV1Api", "list_namespaced_event", namespace,
                             field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}")
        return listing.get("items", [])

    def _log_tail(self, namespace: str, pod: str, previous: bool, lines: int = 20) -> str:
        try:
            return self._call("CoreV1Api", "read_namespaced_pod_log", pod, namespace, container=CONTAINER,
                              tail_lines=lines, previous=previous, missing_ok=True) or ""
        except BackendError:
            return ""  # no log yet (container never started): the events say why

    def observe(self, runtimes: list[Runtime]) -> dict[str, Observation]:
        out: dict[str, Observation] = {}
        by_ns: dict[str, list[Runtime]] = {}
        for rt in runtimes:
            by_ns.setdefault(rt.backend_state.get("namespace") or self.namespace, []).append(rt)
        for ns, group in by_ns.items():
            try:
                pods = self._pods(ns)  # one query for every runtime in this namespace
            except BackendError as e:
                # An API server restarting or a network blip must not end a long wait; an API
                # that stays away for api_grace seconds does.
                since = self._api_down_since = self._api_down_since or time.monotonic()
                down = time.monotonic() - since
                if down >= self.api_grace:
                    raise
                for rt in group:
                    out[rt.name] = Observation(rt.state, f"Kubernetes API unreachable for {down:.0f} s, retrying: {e}",
                                               node=rt.node, ends_at=rt.ends_at)
                continue
            self._api_down_since = None
            for rt in group:
                name = rt.backend_state.get("pod") or pod_name(rt.name, self.owner)
                pod = pods.get(name)
                if pod is not None and rt.backend_state.get("uid") not in (None, pod["metadata"].get("uid")):
                    pod = None  # same name, another pod: ours is gone
                was_ready = rt.state == RuntimeState.READY or rt.ready_at is not None
                # events only while it matters (not yet ready, or something is wrong): one
                # list per pod, so that polling a healthy running kernel costs one request
                needs_detail = not was_ready or pod is None or (pod.get("status") or {}).get("phase") != "Running" \
                    or _restarts(pod) > int(rt.backend_state.get("restarts", 0))
                events = self._events(ns, name) if needs_detail else []
                ob = observation_from_pod(pod, events, was_ready=was_ready,
                                          expected_restarts=int(rt.backend_state.get("restarts", 0)), pod_label=name)
                if ob.state.terminal and pod is not None:
                    log = self._log_tail(ns, name, previous=_restarts(pod) > 0 and not _running(pod))
                    if log.strip():
                        ob.log_tail = (ob.log_tail + "\n--- kernel log ---\n" + log.rstrip()).strip()
                    # A terminal runtime never runs again, and its pod may hold a GPU (image
                    # pull back-off and crash loops keep their allocation): delete it now that
                    # its reason and logs are captured.
                    self._delete(ns, name, wait=False)
                out[rt.name] = ob
        return out

    def kernel_alive(self, runtime: Runtime) -> bool | None:
        """Is the kernel that answered still the one running? Asked about every poll of a
        running cell, answered from the API at most every ``alive_interval`` seconds.

        Needed because the heartbeat cannot tell: when a kernel is killed (OOM) the kubelet
        restarts its container within a second, on the same ports, and the new kernel answers
        the heartbeat while the cell waits forever for a reply from the old one.
        """
        now = time.monotonic()
        checked = self._alive.get(runtime.name)
        if checked is not None and now - checked[0] < self.alive_interval:
            return checked[1]
        ns = runtime.backend_state.get("namespace") or self.namespace
        name = runtime.backend_state.get("pod") or pod_name(runtime.name, self.owner)
        try:
            pod = self._call("CoreV1Api", "read_namespaced_pod", name, ns, missing_ok=True)
        except BackendError:
            return None  # the API is away: the heartbeat decides
        if pod is not None and runtime.backend_state.get("uid") not in (None, pod["metadata"].get("uid")):
            pod = None
        ob = observation_from_pod(pod, [], was_ready=True,
                                  expected_restarts=int(runtime.backend_state.get("restarts", 0)), pod_label=name)
        alive = not ob.state.terminal
        self._alive[runtime.name] = (now, alive)
        return alive

    def _find_pod(self, runtime: Runtime) -> dict[str, Any] | None:
        """The runtime's pod: by name from the record, else by its labels (attach)."""
        ns = runtime.backend_state.get("namespace") or self.namespace
        name = runtime.backend_state.get("pod")
        if name:
            pod = self._call("CoreV1Api", "read_namespaced_pod", name, ns, missing_ok=True)
            if pod is not None:
                return pod
        selector = f"{MANAGED_BY}=airavata-magic,{LABEL_RUNTIME}={pod_name(runtime.name, self.owner)},{LABEL_OWNER}={label_value(self.owner)}"
        items = self._call("CoreV1Api", "list_namespaced_pod", ns, label_selector=selector).get("items", [])
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        if live:
            pod = live[0]
            runtime.backend_state.update(pod=pod["metadata"]["name"], namespace=ns, uid=pod["metadata"]["uid"],
                                         restarts=runtime.backend_state.get("restarts", _restarts(pod)))
            return pod
        return None

    def connection(self, runtime: Runtime) -> ConnectionInfo | None:
        from ..transport.portforward import PodPortForward

        fwd = self._forwards.get(runtime.name)
        if fwd is not None and not fwd.closed:
            return dict(fwd.info)
        pod = self._find_pod(runtime)
        if pod is None:
            raise BackendError(f"the pod of runtime {runtime.name!r} no longer exists; request it again")
        if (pod.get("status") or {}).get("phase") != "Running":
            return None
        ns, name = pod["metadata"].get("namespace") or self.namespace, pod["metadata"]["name"]
        secret_name = next((v["secret"]["secretName"] for v in pod["spec"].get("volumes", [])
                            if v.get("name") == "kernel-connection" and v.get("secret")), name)
        secret = self._call("CoreV1Api", "read_namespaced_secret", secret_name, ns, missing_ok=True)
        if secret is None:
            raise BackendError(f"the Secret {secret_name} with runtime {runtime.name!r}'s key is gone; stop and request it again")
        try:
            remote = json.loads(base64.b64decode(secret["data"][CONNECTION_FILE]))
            ports = {k: int(remote[k]) for k in KERNEL_PORTS}
            key = str(remote["key"])
        except (KeyError, ValueError, TypeError) as e:
            raise BackendError(f"the Secret {secret_name} does not hold a kernel connection file ({e})") from None
        secret_values.remember(key)
        fwd = PodPortForward(self._api().configuration, ns, name, list(ports.values()))
        local = fwd.start()
        info: ConnectionInfo = {
            "ip": "127.0.0.1", "transport": "tcp", "key": key,
            "signature_scheme": remote.get("signature_scheme", "hmac-sha256"), "kernel_name": "",
            **{k: local[p] for k, p in ports.items()},
        }
        fwd.info = info
        self._forwards[runtime.name] = fwd
        # a connection file too, for `jupyter console --existing FILE` (private, 0600)
        paths.write_json(self.runtime_dir(runtime.name) / "connection.json", info)
        return dict(info)

    def forward(self, runtime: Runtime) -> Any:
        """The open port-forward of ``runtime`` (None if none): for status displays and tests."""
        return self._forwards.get(runtime.name)

    def restart(self, runtime: Runtime) -> None:
        """Ask the kernel to shut down; the pod's loop starts a fresh one on the same ports.

        Returns once the *new* kernel answers (its session id differs from the old one's), so
        that nobody mistakes the old kernel, still exiting, for the restarted one.
        """
        from jupyter_client import BlockingKernelClient

        info = self.connection(runtime)
        if info is None:
            raise BackendError(f"runtime {runtime.name!r} is not running yet; nothing to restart")
        kc = BlockingKernelClient()
        kc.load_connection_info(info)
        # jupyter_client channel selection (shell/control sockets), not a subprocess shell
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=True)
        try:
            kc.control_channel.send(kc.session.msg("shutdown_request", {"restart": True}))
            try:
                old = kc.control_channel.get_msg(timeout=10)["header"]["session"]
            except Exception:
                raise BackendError(f"the kernel of runtime {runtime.name!r} did not answer the restart request") from None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg_id = kc.kernel_info()
                try:
                    while True:
                        reply = kc.get_shell_msg(timeout=1)
                        if reply["parent_header"].get("msg_id") == msg_id:
                            break
                except Exception:
                    continue  # the old kernel is gone and the new one not up yet
                if reply["header"]["session"] != old:
                    # if the old kernel's exit was not clean, the kubelet restarted the container
                    # instead of the pod's loop: a restart we asked for either way, not a death
                    pod = self._find_pod(runtime)
                    if pod is not None:
                        runtime.backend_state["restarts"] = _restarts(pod)
                    self._alive.pop(runtime.name, None)
                    return
                time.sleep(0.1)
            raise BackendError(f"the kernel of runtime {runtime.name!r} did not come back within 60 s of the restart")
        finally:
            kc.stop_channels()

    def stop(self, runtime: Runtime) -> None:
        fwd = self._forwards.pop(runtime.name, None)
        if fwd is not None:
            fwd.close()
        ns = runtime.backend_state.get("namespace") or self.namespace
        name = runtime.backend_state.get("pod") or pod_name(runtime.name, self.owner)
        self._delete(ns, name, wait=True)

    def _delete(self, namespace: str, name: str, wait: bool) -> None:
        """Delete a runtime's pod and Secret (quietly if gone); with ``wait``, until the pod is gone."""
        self._call("CoreV1Api", "delete_namespaced_pod", name, namespace, missing_ok=True, grace_period_seconds=5)
        # The ownerReference would let the garbage collector do this; do not wait for it.
        self._call("CoreV1Api", "delete_namespaced_secret", name, namespace, missing_ok=True)
        if wait:
            self._wait_gone(namespace, name, timeout=20.0)

    def _wait_gone(self, namespace: str, name: str, timeout: float) -> None:
        """Watch the pod until it is deleted (or ``timeout``), so a stop is complete when it returns."""
        from kubernetes import client, watch

        core = client.CoreV1Api(self._api())
        listing = self._call("CoreV1Api", "list_namespaced_pod", namespace, field_selector=f"metadata.name={name}")
        if not listing.get("items"):
            return
        w = watch.Watch()
        try:
            for ev in w.stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                               resource_version=listing["metadata"].get("resourceVersion"),
                               timeout_seconds=max(1, int(timeout)), _request_timeout=timeout + 5):
                if ev["type"] == "DELETED":
                    return
        except Exception:
            return  # the watch is a courtesy: the delete itself was accepted
        finally:
            w.stop()

    def authenticate(self) -> AuthResult:
        checks = [("create", "pods", ""), ("create", "pods", "portforward"), ("create", "secrets", ""),
                  ("patch", "secrets", ""), ("get", "secrets", ""), ("delete", "pods", ""), ("list", "events", "")]
        try:
            ns = self.namespace
            missing = []
            for verb, resource, sub in checks:
                review = self._call("AuthorizationV1Api", "create_self_subject_access_review", {
                    "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "resource": resource,
                                                    "subresource": sub, "group": ""}}})
                if not (review.get("status") or {}).get("allowed"):
                    missing.append(f"{verb} {resource}{'/' + sub if sub else ''}")
        except BackendError as e:
            return AuthResult(self.resource.name, self.kind, False, str(e))
        if missing:
            return AuthResult(self.resource.name, self.kind, False,
                              f"namespace {ns}: missing permission to {', '.join(missing)}; "
                              "ask the cluster admin for a Role granting it")
        host = self._api().configuration.host
        return AuthResult(self.resource.name, self.kind, True, f"{host} namespace {ns}: may run kernel pods")

    def close(self) -> None:
        for fwd in self._forwards.values():
            fwd.close()
        self._forwards.clear()
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:
                    pass
                self._client = None


def _restarts(pod: dict[str, Any]) -> int:
    cs = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount") or 0) for c in cs if c.get("name") == CONTAINER)


def _running(pod: dict[str, Any]) -> bool:
    cs = (pod.get("status") or {}).get("containerStatuses") or []
    return any((c.get("state") or {}).get("running") for c in cs if c.get("name") == CONTAINER)


def _short(e: BaseException) -> str:
    """The innermost useful line of a urllib3/ssl error."""
    reason = getattr(e, "reason", None)
    msg = str(reason or e)
    return msg.splitlines()[0][:300] if msg else type(e).__name__
