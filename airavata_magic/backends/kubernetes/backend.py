"""The lifecycle of Kubernetes runtimes: request, observe, connect, restart, stop.

How a runtime is built (the pod's fixed part is ``kernels/pod.yaml``):

1. a Secret holding the kernel's connection file (fixed ports, a fresh key);
2. the pod, which mounts that Secret read-only and starts ``ipykernel`` bound to its loopback;
3. the Secret gets an ownerReference to the pod, so Kubernetes deletes it with the pod even when
   nobody calls ``%stop_runtime`` (``stop()`` also deletes it explicitly).

The kernel's five ports are reached through ``transport.portforward.PodPortForward``, one per
runtime, owned here and closed by ``stop()`` and ``close()``. Like every backend this one reports
facts and never changes the ``Runtime`` it is given; ``observe()`` never deletes a pod.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ... import known_secrets, paths
from ...errors import BackendError, InvalidArgument
from ...runtime import Observation, RuntimeState
from ..base import AuthResult, Backend, ConnectionInfo, Submission
from . import settings as schema
from .api import KubeApi
from .liveness import PodLiveness
from .manifests import (CONTAINER, KERNEL_PORTS, LABEL_RUNTIME, PodRequest, default_owner, new_connection,
                        owner_reference, owner_selector, pod_name, read_connection, render_pod, render_secret,
                        secret_name_of)
from .status import observation_from_pod, phase, restarts, running

if TYPE_CHECKING:
    from ...profile import Resource
    from ...runtime import Runtime
    from ...transport.portforward import PodPortForward

# What %authenticate checks: the permissions a runtime's lifecycle needs in the namespace.
NEEDED_PERMISSIONS = [("create", "pods", ""), ("create", "pods", "portforward"), ("create", "secrets", ""),
                      ("patch", "secrets", ""), ("get", "secrets", ""), ("delete", "pods", ""), ("list", "events", "")]


@dataclass
class _Forward:
    """A runtime's open port-forward and the connection info that points at it."""

    forward: "PodPortForward"
    info: ConnectionInfo


class KubernetesBackend(Backend):
    """Runtimes as pods on a Kubernetes cluster (kubeconfig context or in-cluster config)."""

    kind = "kubernetes"
    profile_keys = schema.PROFILE_KEYS
    poll_interval = 0.5
    # seconds between pod checks while a cell runs (kernel_alive)
    alive_interval: float = 2.0
    # seconds one liveness request may take in the background before it is given up
    alive_request_timeout: float = 5.0
    # seconds the API may be unreachable before observe() gives up
    api_grace: float = 30.0
    # seconds stop() waits for the pod to be gone
    stop_timeout: float = 20.0

    def __init__(self, resource: "Resource", runtime_dir: Callable[[str], Any]) -> None:
        super().__init__(resource, runtime_dir)
        self.settings = resource.settings
        self.owner = default_owner()
        self.api = KubeApi(resource.name, resource.source, resource.settings)
        self._forwards: dict[str, _Forward] = {}
        self._found: dict[str, dict[str, Any]] = {}  # runtime name -> pod facts found by labels (attach)
        self._watched: dict[str, Runtime] = {}  # runtime name -> the record last asked about
        self._liveness = PodLiveness(self._read_alive, self.alive_interval, f"k8s-alive-{resource.name}")
        self._api_down_since: float | None = None

    @property
    def namespace(self) -> str:
        """The namespace new pods go to."""
        return self.api.namespace

    def _call(self, api: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.api.call(api, method, *args, **kwargs)

    def _where(self, runtime: "Runtime") -> tuple[str, str, dict[str, Any]]:
        """The namespace and pod name of a runtime, and what is known of its pod."""
        state = {**self._found.get(runtime.name, {}), **runtime.backend_state}
        return state.get("namespace") or self.namespace, state.get("pod") or pod_name(runtime.name, self.owner), state

    # -- request -----------------------------------------------------------------------------
    def pod_request(self, runtime: "Runtime") -> PodRequest:
        """What the pod of ``runtime`` will be, from the profile and the runtime's spec."""
        s, spec = self.settings, runtime.spec
        image = spec.image or s.get("image")
        if not image:
            raise InvalidArgument(f"resource {self.resource.name!r} has no image: set image: in the profile or pass --image")
        image = _flag(schema.image, image, "--image")
        node = _flag(schema.dns_subdomain, spec.node, "--node") if spec.node is not None else None
        if spec.partition:
            raise InvalidArgument("a kubernetes resource has no partitions; use node_selector: in the profile or --node")
        return PodRequest(
            name=pod_name(runtime.name, self.owner), namespace=self.namespace, runtime=runtime.name,
            owner=self.owner, image=image, python=s.get("python", schema.DEFAULT_PYTHON),
            cpus=spec.cpus, memory_mb=spec.memory, gpus=spec.gpus or 0,
            gpu_resource=s.get("gpu_resource", schema.DEFAULT_GPU_RESOURCE),
            walltime_min=spec.walltime or s.get("walltime", schema.DEFAULT_WALLTIME_MIN),
            node=node, node_selector=s.get("node_selector", {}), tolerations=s.get("tolerations", []),
            service_account=s.get("service_account"), image_pull_secrets=s.get("image_pull_secrets", []),
            run_as_user=s.get("run_as_user", schema.DEFAULT_RUN_AS_USER),
            run_as_group=s.get("run_as_group", schema.DEFAULT_RUN_AS_GROUP),
            storage_claim=s.get("storage_claim"), storage_mount=s.get("storage_mount", schema.DEFAULT_STORAGE_MOUNT),
        )

    def request(self, runtime: "Runtime") -> Submission:
        req = self.pod_request(runtime)
        ns = req.namespace
        if req.node and self.api.node_exists(req.node) is False:
            # a pod bound to a node that does not exist stays Pending for ever: say so now
            raise InvalidArgument(f"--node {req.node}: the cluster has no node of that name")
        existing = self._call("CoreV1Api", "read_namespaced_pod", req.name, ns, missing_ok=True)
        if existing is not None:
            # A pod that is going away, or that failed for good, is what is left of an earlier
            # runtime of this name: replace it. A live one is somebody's kernel: refuse.
            if existing["metadata"].get("deletionTimestamp") or \
                    observation_from_pod(existing, [], was_ready=False).state.terminal:
                self._delete(ns, req.name, wait=True)
            else:
                raise BackendError(f"pod {req.name} for runtime {runtime.name!r} already exists ({phase(existing)}); "
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
        self._found.pop(runtime.name, None)
        self._liveness.forget(runtime.name)
        return Submission(job_id=req.name, state=RuntimeState.QUEUED, node=req.node,
                          backend_state={"pod": req.name, "namespace": ns, "uid": pod["metadata"]["uid"], "restarts": 0})

    def estimate_start(self, runtime: "Runtime") -> float | None:
        """Ask the API server to admit the pod without creating it (``dryRun=All``: validation,
        quotas, pod security admission); refused means it can never start here. When it would
        be scheduled is not knowable without the cluster's nodes and queue: None (unknown)."""
        req = self.pod_request(runtime)
        try:
            self._call("CoreV1Api", "create_namespaced_pod", req.namespace, render_pod(req), dry_run="All")
        except BackendError as e:
            raise BackendError(f"the cluster would not accept this pod: {e}") from None
        return None

    # -- observe -----------------------------------------------------------------------------
    def _pods(self, namespace: str) -> dict[str, dict[str, Any]]:
        listing = self._call("CoreV1Api", "list_namespaced_pod", namespace, label_selector=owner_selector(self.owner))
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

    def observe(self, runtimes: list["Runtime"]) -> dict[str, Observation]:
        """One pod listing per namespace, events only for pods that are not plainly running.
        Only observes: a terminal runtime's pod is left for the manager's ``stop()``."""
        out: dict[str, Observation] = {}
        by_ns: dict[str, list[Runtime]] = {}
        for rt in runtimes:
            by_ns.setdefault(self._where(rt)[0], []).append(rt)
        for ns, group in by_ns.items():
            try:
                pods = self._pods(ns)
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
                out[rt.name] = self._observe_one(ns, rt, pods)
        return out

    def _observe_one(self, ns: str, rt: "Runtime", pods: dict[str, dict[str, Any]]) -> Observation:
        _, name, state = self._where(rt)
        pod = pods.get(name)
        if pod is not None and state.get("uid") not in (None, pod["metadata"].get("uid")):
            pod = None  # same name, another pod: ours is gone
        expected = int(state.get("restarts", 0))
        was_ready = rt.state == RuntimeState.READY or rt.ready_at is not None
        # events only while it matters (not yet ready, or something is wrong): one list per
        # pod, so that polling a healthy running kernel costs one request
        needs_detail = not was_ready or pod is None or phase(pod) != "Running" or restarts(pod) > expected
        events = self._events(ns, name) if needs_detail else []
        ob = observation_from_pod(pod, events, was_ready=was_ready, expected_restarts=expected, pod_label=name)
        if ob.state.terminal and pod is not None:
            log = self._log_tail(ns, name, previous=restarts(pod) > 0 and not running(pod))
            if log.strip():
                ob.log_tail = (ob.log_tail + "\n--- kernel log ---\n" + log.rstrip()).strip()
        return ob

    def kernel_alive(self, runtime: "Runtime", timeout: float = 1.0) -> bool | None:
        """Is the kernel that answered still the one running? Never blocks past ``timeout``
        (``liveness.PodLiveness``: the pod is read in the background, at most every
        ``alive_interval`` seconds).

        Needed because the heartbeat cannot tell: when a kernel is killed (OOM) the kubelet
        restarts its container within a second, on the same ports, and the new kernel answers
        the heartbeat while the cell waits forever for a reply from the old one.
        """
        self._liveness.interval = self.alive_interval
        self._watched[runtime.name] = runtime
        return self._liveness.alive(runtime.name, timeout)

    def _read_alive(self, name: str) -> bool | None:
        """Read the pod once (on the liveness thread): None when the API cannot be reached."""
        runtime = self._watched.get(name)
        if runtime is None:
            return None  # stopped meanwhile
        ns, pod_, state = self._where(runtime)
        try:
            pod = self._call("CoreV1Api", "read_namespaced_pod", pod_, ns, missing_ok=True,
                             timeout=self.alive_request_timeout)
        except BackendError:
            return None  # the API is away: the heartbeat decides
        if pod is not None and state.get("uid") not in (None, pod["metadata"].get("uid")):
            pod = None
        ob = observation_from_pod(pod, [], was_ready=True, expected_restarts=int(state.get("restarts", 0)),
                                  pod_label=pod_)
        return not ob.state.terminal

    # -- connect -----------------------------------------------------------------------------
    def _find_pod(self, runtime: "Runtime") -> dict[str, Any] | None:
        """The runtime's pod: by name from the record, else by its labels (attach)."""
        ns, _, state = self._where(runtime)
        if state.get("pod"):
            pod = self._call("CoreV1Api", "read_namespaced_pod", state["pod"], ns, missing_ok=True)
            if pod is not None:
                return pod
        selector = f"{owner_selector(self.owner)},{LABEL_RUNTIME}={pod_name(runtime.name, self.owner)}"
        items = self._call("CoreV1Api", "list_namespaced_pod", ns, label_selector=selector).get("items", [])
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        if not live:
            return None
        pod = live[0]
        # remembered here (the record is the manager's): restarts so far were not deaths we saw
        self._found[runtime.name] = {"pod": pod["metadata"]["name"], "namespace": ns, "uid": pod["metadata"]["uid"],
                                     "restarts": state.get("restarts", restarts(pod))}
        return pod

    def connection(self, runtime: "Runtime") -> ConnectionInfo | None:
        from ...transport.portforward import PodPortForward

        open_ = self._forwards.get(runtime.name)
        if open_ is not None and not open_.forward.closed:
            return dict(open_.info)
        pod = self._find_pod(runtime)
        if pod is None:
            raise BackendError(f"the pod of runtime {runtime.name!r} no longer exists; request it again")
        if phase(pod) != "Running":
            return None
        ns, name = pod["metadata"].get("namespace") or self.namespace, pod["metadata"]["name"]
        secret_name = secret_name_of(pod)
        secret = self._call("CoreV1Api", "read_namespaced_secret", secret_name, ns, missing_ok=True)
        if secret is None:
            raise BackendError(f"the Secret {secret_name} with runtime {runtime.name!r}'s key is gone; stop and request it again")
        try:
            remote = read_connection(secret)
            ports = {k: int(remote[k]) for k in KERNEL_PORTS}
            key = str(remote["key"])
        except (KeyError, ValueError, TypeError) as e:
            raise BackendError(f"the Secret {secret_name} does not hold a kernel connection file ({e})") from None
        known_secrets.remember(key)
        fwd = PodPortForward(self.api.configuration, ns, name, list(ports.values()))
        local = fwd.start()
        info: ConnectionInfo = {
            "ip": "127.0.0.1", "transport": "tcp", "key": key,
            "signature_scheme": remote.get("signature_scheme", "hmac-sha256"), "kernel_name": "",
            **{k: local[p] for k, p in ports.items()},
        }
        self._forwards[runtime.name] = _Forward(fwd, info)
        # a connection file too, for `jupyter console --existing FILE` (private, 0600)
        paths.write_json(self.runtime_dir(runtime.name) / "connection.json", info)
        return dict(info)

    def forward(self, runtime: "Runtime") -> "PodPortForward | None":
        """The open port-forward of ``runtime`` (None if none): for status displays and tests."""
        open_ = self._forwards.get(runtime.name)
        return open_.forward if open_ is not None else None

    def restart(self, runtime: "Runtime") -> dict[str, Any] | None:
        """Ask the kernel to shut down; the pod's loop starts a fresh one on the same ports.
        Returns once the *new* kernel answers, with the container restart count to expect now."""
        from .restart import restart_kernel

        info = self.connection(runtime)
        if info is None:
            raise BackendError(f"runtime {runtime.name!r} is not running yet; nothing to restart")
        restart_kernel(info, runtime.name)
        self._liveness.forget(runtime.name)
        # if the old kernel's exit was not clean, the kubelet restarted the container instead
        # of the pod's loop: a restart we asked for either way, not a death
        pod = self._find_pod(runtime)
        return {"restarts": restarts(pod)} if pod is not None else None

    # -- stop --------------------------------------------------------------------------------
    def stop(self, runtime: "Runtime") -> None:
        open_ = self._forwards.pop(runtime.name, None)
        if open_ is not None:
            open_.forward.close()
        ns, name, _ = self._where(runtime)
        self._found.pop(runtime.name, None)
        self._watched.pop(runtime.name, None)
        self._liveness.forget(runtime.name)
        self._delete(ns, name, wait=True)

    def _delete(self, namespace: str, name: str, wait: bool) -> None:
        """Delete a runtime's pod and Secret (quietly if gone); with ``wait``, until the pod is gone."""
        self._call("CoreV1Api", "delete_namespaced_pod", name, namespace, missing_ok=True, grace_period_seconds=5)
        # The ownerReference would let the garbage collector do this; do not wait for it.
        self._call("CoreV1Api", "delete_namespaced_secret", name, namespace, missing_ok=True)
        if wait:
            self.api.wait_gone(namespace, name, timeout=self.stop_timeout)

    def authenticate(self) -> AuthResult:
        missing = []
        try:
            ns = self.namespace
            for verb, resource, sub in NEEDED_PERMISSIONS:
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
        return AuthResult(self.resource.name, self.kind, True, f"{self.api.configuration.host} namespace {ns}: may run kernel pods")

    def close(self) -> None:
        """Close every port-forward (joining their threads) and the API client; pods stay."""
        for open_ in self._forwards.values():
            open_.forward.close()
        self._forwards.clear()
        self._liveness.close()
        self.api.close()


def _flag(check: Callable[[Any], Any], value: Any, flag: str) -> Any:
    """``check(value)``, its error naming the flag the value came from."""
    try:
        return check(value)
    except InvalidArgument as e:
        raise InvalidArgument(f"invalid {flag}: {e}") from None
