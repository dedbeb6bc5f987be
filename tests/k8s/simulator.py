"""A Kubernetes API **simulator** for the kubernetes backend's tests. It is not a cluster.

No real API server can run on these machines, so this serves, over real HTTPS with a bearer
token and the official wire formats, exactly the part of the API the backend uses:

- pods: create, get, list (label and field selectors), watch, delete, log;
- secrets: create, get, list, merge-patch, delete; ownerReference garbage collection;
- events: list (field selectors), emitted with the reasons and messages Kubernetes uses;
- SelfSubjectAccessReview, and RBAC denials on real requests (403) for what tests deny;
- nodes: get, and list (``sim_nodes.py``), each refused (403) on demand;
- pods/portforward over WebSocket (``v4.channel.k8s.io``: a channel byte on every frame, the
  port number as the first two bytes of the first frame on each channel).

Its "scheduler" places pods on simulated nodes (capacity, node selector, taints) and its
"kubelet" runs the pod's command as a local process, so a real ipykernel starts. What the
kubelet does differently from a real node, on purpose:

- images are a mapping ``image name -> directory`` put first on the process's PATH; an image not
  in the mapping fails to pull (ErrImagePull, then ImagePullBackOff);
- each pod gets its own network namespace (``unshare --net``, loopback up), as a real pod does,
  and the port-forward connects to 127.0.0.1 *inside* it; where network namespaces cannot be
  made (not root), pods share the host's loopback (``netns=False``);
- path mapping: a Secret or emptyDir volume is a directory under the simulator's work dir; any
  command argument or environment value containing a volume's ``mountPath`` has that prefix
  replaced by the directory (Secret files get the volume's ``defaultMode``);
- the securityContext is not enforced (the process runs as the test's user) except that
  ``runAsNonRoot`` without a non-zero ``runAsUser`` gives CreateContainerConfigError;
- GPUs are counted per node; a pod given N GPUs sees ``NVIDIA_VISIBLE_DEVICES`` with N indices,
  as the NVIDIA device plugin sets it;
- durations are short: container restart back-off starts at ``crash_backoff`` seconds, image
  pull back-off at ``pull_backoff``, and ``activeDeadlineSeconds`` is multiplied by
  ``time_scale`` (the pod's ``spec`` keeps the real number).

Tests drive failures with ``delete_pod`` (a deletion from outside), ``oom_kill``,
``drop_portforwards``, ``deny``, ``unavailable`` (503s), ``delay`` (a slow API server), and
by choosing images, node selectors and GPU counts.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ctypes
import datetime as dt
import ipaddress
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import WSMsgType, web

from .sim_jobs import register_jobs
from .sim_nodes import register_nodes

CLONE_NEWNET = 0x40000000
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


def _quantity(value: Any) -> float:
    """A Kubernetes quantity as a float (cpu in cores, memory in MiB, counts as is)."""
    s = str(value)
    units = {"m": 1e-3, "Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2, "k": 1000 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for u, f in units.items():
        if s.endswith(u):
            return float(s[: -len(u)]) * f
    return float(s)


def parse_label_selector(sel: str) -> list[tuple[str, str, str | None]]:
    """``a=b,c!=d,e,!f`` -> [(op, key, value)]."""
    out: list[tuple[str, str, str | None]] = []
    for part in filter(None, (p.strip() for p in sel.split(","))):
        if "!=" in part:
            k, v = part.split("!=", 1)
            out.append(("!=", k.strip(), v.strip()))
        elif "==" in part or "=" in part:
            k, v = re.split(r"==?", part, maxsplit=1)
            out.append(("=", k.strip(), v.strip()))
        elif part.startswith("!"):
            out.append(("!", part[1:].strip(), None))
        else:
            out.append(("exists", part, None))
    return out


def matches_labels(labels: dict[str, str], selector: str) -> bool:
    for op, k, v in parse_label_selector(selector):
        if op == "=" and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
        if op == "exists" and k not in labels:
            return False
        if op == "!" and k in labels:
            return False
    return True


def _field(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def matches_fields(obj: dict[str, Any], selector: str) -> bool:
    for part in filter(None, (p.strip() for p in selector.split(","))):
        neg = "!=" in part
        k, v = re.split(r"!=|==?", part, maxsplit=1)
        got = _field(obj, k.strip())
        got = "" if got is None else str(got)
        if (got == v.strip()) == neg:
            return False
    return True


@dataclass
class Node:
    """A simulated node: labels, allocatable resources and taints."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    capacity: dict[str, float] = field(default_factory=lambda: {"cpu": 16, "memory": 65536})
    taints: list[dict[str, str]] = field(default_factory=list)


DEFAULT_NODES = [
    Node("sim-cpu-1", {"kubernetes.io/hostname": "sim-cpu-1", "pool": "cpu"}, {"cpu": 16, "memory": 65536}),
    Node("sim-gpu-1", {"kubernetes.io/hostname": "sim-gpu-1", "pool": "gpu", "gpu": "a100"},
         {"cpu": 32, "memory": 262144, "nvidia.com/gpu": 2},
         [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
]


class _PodRun:
    """The kubelet's bookkeeping for one pod."""

    def __init__(self, key: tuple[str, str], uid: str, root: Path) -> None:
        self.key, self.uid, self.root = key, uid, root
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[Any] | None = None
        self.deadline: asyncio.Task[Any] | None = None
        self.logs: list[Path] = []
        self.oom = False
        self.stopping = False
        self.gpus: list[int] = []
        self.node: str | None = None


class Simulator:
    """The simulated API server, scheduler and kubelet; runs its own event loop in a thread."""

    def __init__(self, workdir: Path, images: dict[str, str], *, nodes: list[Node] | None = None,
                 namespace: str = "research", netns: bool | None = None, time_scale: float = 1.0,
                 crash_backoff: float = 0.3, pull_backoff: float = 0.3,
                 stream_idle_timeout: float | None = None) -> None:
        self.workdir = Path(workdir)
        self.images = dict(images)
        self.nodes = copy.deepcopy(nodes if nodes is not None else DEFAULT_NODES)
        self.namespace = namespace
        self.netns = _netns_available() if netns is None else netns
        self.time_scale, self.crash_backoff, self.pull_backoff = time_scale, crash_backoff, pull_backoff
        # close port-forward streams that carry nothing (not even a ping) for this long, as load
        # balancers and API servers in front of real clusters do
        self.stream_idle_timeout = stream_idle_timeout
        self.pings = 0  # WebSocket pings received on port-forward streams
        self.stream_log: list[tuple[float, str, int, str]] = []  # (monotonic, pod, port, event)
        self.token = secrets.token_urlsafe(24)
        self.user = "sim-user"
        self.denied: set[tuple[str, str, str]] = set()
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {"pods": {}, "secrets": {}, "events": {},
                                                                          "persistentvolumeclaims": {}}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, obj)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API request, for tests
        self.unavailable = False  # answer every request 503, as an API server restarting does
        self.delay = 0.0  # seconds every REST request waits before it is answered: a slow API server
        self._rv = itertools.count(1000)
        self._watchers: list[tuple[str, asyncio.Queue[Any]]] = []
        self._runs: dict[tuple[str, str], _PodRun] = {}
        self._streams: dict[tuple[str, str], set[web.WebSocketResponse]] = {}
        self._ips = itertools.count(10)
        self.loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.kubeconfig = self.workdir / "kubeconfig"

    # -- start/stop ----------------------------------------------------------------------------
    def start(self) -> "Simulator":
        self.workdir.mkdir(parents=True, exist_ok=True)
        cert, key, ca_pem = _self_signed(self.workdir)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._serve(ctx))
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="k8s-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(20):
            raise RuntimeError("the Kubernetes API simulator did not start")
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "sim", "preferences": {},
            "clusters": [{"name": "sim", "cluster": {"server": self.url,
                                                     "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
            "users": [{"name": self.user, "user": {"token": self.token}}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": self.user, "namespace": self.namespace}}],
        }))
        os.chmod(self.kubeconfig, 0o600)
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _serve(self, ctx: ssl.SSLContext) -> None:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        base = "/api/v1/namespaces/{ns}"
        r.add_get(base + "/pods", self._list_pods)
        r.add_post(base + "/pods", self._create_pod)
        r.add_get(base + "/pods/{name}", self._get("pods"))
        r.add_delete(base + "/pods/{name}", self._delete_pod_handler)
        r.add_get(base + "/pods/{name}/log", self._pod_log)
        r.add_get(base + "/pods/{name}/portforward", self._portforward)
        r.add_get(base + "/secrets", self._list("secrets"))
        r.add_post(base + "/secrets", self._create_secret)
        r.add_get(base + "/secrets/{name}", self._get("secrets"))
        r.add_patch(base + "/secrets/{name}", self._patch_secret)
        r.add_delete(base + "/secrets/{name}", self._delete_secret)
        r.add_get(base + "/events", self._list("events"))
        r.add_post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self._ssar)
        r.add_get("/api/v1/nodes/{name}", self._get_node)
        register_jobs(self, r)  # batch/v1 Jobs and their controller (sim_jobs.py)
        register_nodes(self, r)  # the node list, forbidden on demand (sim_nodes.py)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        """Kill every pod process and stop serving."""
        async def shutdown() -> None:
            for run in list(self._runs.values()):
                await self._kill(run, grace=0)
            for streams in self._streams.values():
                for ws in list(streams):
                    await ws.close()
            for _, q in self._watchers:
                q.put_nowait(None)
            if self._runner:
                await self._runner.cleanup()

        if self._thread and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the simulator's loop from a test thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # -- test controls ---------------------------------------------------------------------------
    def deny(self, verb: str, resource: str, subresource: str = "") -> None:
        """RBAC: from now on this user may not ``verb`` ``resource[/subresource]``."""
        self.denied.add((verb, resource, subresource))

    def pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        ns = namespace or self.namespace
        return [copy.deepcopy(o) for (n, _), o in list(self.objects["pods"].items()) if n == ns]

    def secrets(self, namespace: str | None = None) -> list[dict[str, Any]]:
        ns = namespace or self.namespace
        return [copy.deepcopy(o) for (n, _), o in list(self.objects["secrets"].items()) if n == ns]

    def events(self, name: str, namespace: str | None = None) -> list[dict[str, Any]]:
        ns = namespace or self.namespace
        return [copy.deepcopy(o) for (n, _), o in list(self.objects["events"].items())
                if n == ns and o["involvedObject"]["name"] == name]

    def create_claim(self, name: str, namespace: str | None = None) -> Path:
        """A bound PersistentVolumeClaim; returns the host directory its volume is. Pods run as
        processes of this machine and their file I/O is not remapped, so a test mounts the claim
        (``storage_mount``) at this very path: the pod and the test then see the same files."""
        ns = namespace or self.namespace
        path = self.claim_dir(name, ns)
        path.mkdir(parents=True, exist_ok=True)
        self.objects["persistentvolumeclaims"][(ns, name)] = {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": ns},
            "spec": {"accessModes": ["ReadWriteMany"]}, "status": {"phase": "Bound"}}
        return path

    def claim_dir(self, name: str, namespace: str | None = None) -> Path:
        return self.workdir / "claims" / (namespace or self.namespace) / name

    def delete_pod(self, name: str, namespace: str | None = None) -> None:
        """Delete a pod from outside (as ``kubectl delete pod`` would)."""
        self.call(self._delete_pod((namespace or self.namespace, name), grace=1))

    def oom_kill(self, name: str, namespace: str | None = None) -> None:
        """Kill the pod's container as the kernel's OOM killer does (reason OOMKilled, 137)."""
        async def kill() -> None:
            run = self._runs[(namespace or self.namespace, name)]
            run.oom = True
            if run.proc and run.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)
        self.call(kill())

    def drop_portforwards(self, name: str | None = None, namespace: str | None = None) -> int:
        """Close every open port-forward stream (of one pod), as an API server restart would."""
        async def drop() -> int:
            n = 0
            for (ns, pod), streams in self._streams.items():
                if name is None or (ns == (namespace or self.namespace) and pod == name):
                    for ws in list(streams):
                        await ws.close()
                        n += 1
            return n
        return self.call(drop())

    def open_streams(self, name: str, namespace: str | None = None) -> int:
        """How many port-forward streams to a pod are open now."""
        return len(self._streams.get((namespace or self.namespace, name), ()))

    def pod_pid(self, name: str, namespace: str | None = None) -> int | None:
        run = self._runs.get((namespace or self.namespace, name))
        return run.proc.pid if run and run.proc and run.proc.returncode is None else None

    # -- objects and watches --------------------------------------------------------------------
    def _emit(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        if type_ != "DELETED":
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
        rv = int(obj["metadata"]["resourceVersion"]) if type_ != "DELETED" else next(self._rv)
        snap = copy.deepcopy(obj)
        self.history.append((rv, kind, type_, snap))
        del self.history[:-2000]
        for k, q in self._watchers:
            if k == kind:
                q.put_nowait((type_, snap))

    def _event(self, pod: dict[str, Any], type_: str, reason: str, message: str, component: str = "kubelet") -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        for ev in self.objects["events"].values():
            io = ev["involvedObject"]
            if io["uid"] == pod["metadata"]["uid"] and ev["reason"] == reason and ev["message"] == message:
                ev["count"] += 1
                ev["lastTimestamp"] = _now()
                self._emit("events", "MODIFIED", ev)
                return
        ename = f"{name}.{secrets.token_hex(8)}"
        ev = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": ename, "namespace": ns, "creationTimestamp": _now(), "uid": str(uuid.uuid4())},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name,
                               "uid": pod["metadata"]["uid"], "fieldPath": "spec.containers{kernel}"},
            "reason": reason, "message": message, "type": type_,
            "source": {"component": component, "host": pod["spec"].get("nodeName") or ""},
            "reportingComponent": component, "reportingInstance": pod["spec"].get("nodeName") or "",
            "firstTimestamp": _now(), "lastTimestamp": _now(), "count": 1,
        }
        self.objects["events"][(ns, ename)] = ev
        self._emit("events", "ADDED", ev)

    def _changed(self, pod: dict[str, Any]) -> None:
        self._emit("pods", "MODIFIED", pod)

    # -- HTTP: auth ----------------------------------------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.delay and request.headers.get("Upgrade", "").lower() != "websocket":
            await asyncio.sleep(self.delay)
        if self.unavailable:
            return _status(503, "ServiceUnavailable", "the simulated API server is unavailable")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        verb = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}[request.method]
        parts = request.path.split("/")
        if len(parts) >= 6 and parts[1] == "api":
            resource = parts[5]
            sub = parts[7] if len(parts) > 7 else ""
            if verb == "get" and len(parts) == 6:
                verb = "watch" if request.query.get("watch") in ("true", "1") else "list"
            if sub in ("portforward",):
                verb = "create"  # WebSocket upgrades of exec/attach/portforward are checked as create
            if (verb, resource, sub) in self.denied:
                what = f"{resource}/{sub}" if sub else resource
                return _status(403, "Forbidden", f'{what} is forbidden: User "{self.user}" cannot {verb} resource '
                                                 f'"{what}" in API group "" in the namespace "{parts[4]}"')
        return await handler(request)

    # -- HTTP: generic --------------------------------------------------------------------------------
    def _get(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            key = (request.match_info["ns"], request.match_info["name"])
            obj = self.objects[kind].get(key)
            if obj is None:
                return _status(404, "NotFound", f'{kind} "{key[1]}" not found', {"name": key[1], "kind": kind})
            return web.json_response(obj)
        return handler

    def _list(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._list_kind(kind, request)
        return handler

    async def _list_kind(self, kind: str, request: web.Request) -> web.StreamResponse:
        ns = request.match_info["ns"]
        labels = request.query.get("labelSelector", "")
        fields = request.query.get("fieldSelector", "")

        def ok(obj: dict[str, Any]) -> bool:
            return (obj["metadata"].get("namespace") == ns and matches_labels(obj["metadata"].get("labels") or {}, labels)
                    and matches_fields(obj, fields))

        if request.query.get("watch") in ("true", "1"):
            return await self._watch(kind, request, ok)
        items = [o for o in self.objects[kind].values() if ok(o)]
        list_kind = {"pods": "PodList", "secrets": "SecretList", "events": "EventList"}[kind]
        return web.json_response({"kind": list_kind, "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(self._current_rv())}, "items": items})

    def _current_rv(self) -> int:
        return self.history[-1][0] if self.history else 999

    async def _watch(self, kind: str, request: web.Request, ok: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        q: asyncio.Queue[Any] = asyncio.Queue()
        entry = (kind, q)
        rv = request.query.get("resourceVersion")
        if rv:
            for hrv, hkind, htype, obj in list(self.history):
                if hkind == kind and hrv > int(rv):
                    q.put_nowait((htype, obj))
        else:
            for obj in list(self.objects[kind].values()):
                q.put_nowait(("ADDED", copy.deepcopy(obj)))
        self._watchers.append(entry)
        timeout = float(request.query.get("timeoutSeconds", 300))
        end = time.monotonic() + timeout
        try:
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(q.get(), left)
                except asyncio.TimeoutError:
                    break
                if item is None:
                    break
                type_, obj = item
                if ok(obj):
                    await resp.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.remove(entry)
        with contextlib.suppress(Exception):
            await resp.write_eof()
        return resp

    # -- HTTP: secrets ---------------------------------------------------------------------------------
    async def _create_secret(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        body = await request.json()
        name = body.get("metadata", {}).get("name", "")
        if invalid := _invalid_name("Secret", name):
            return invalid
        if (ns, name) in self.objects["secrets"]:
            return _status(409, "AlreadyExists", f'secrets "{name}" already exists', {"name": name, "kind": "secrets"})
        body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        self.objects["secrets"][(ns, name)] = body
        self._emit("secrets", "ADDED", body)
        return web.json_response(body, status=201)

    async def _patch_secret(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        obj = self.objects["secrets"].get(key)
        if obj is None:
            return _status(404, "NotFound", f'secrets "{key[1]}" not found')
        if "merge-patch" not in request.content_type and "strategic-merge-patch" not in request.content_type:
            return _status(415, "UnsupportedMediaType", f"the simulator serves merge patches, not {request.content_type}")
        patch = await request.json()
        if obj.get("immutable") and ("data" in patch or "stringData" in patch):
            return _status(422, "Invalid", f'Secret "{key[1]}" is invalid: data: Forbidden: field is immutable when `immutable` is set')
        _merge_patch(obj, patch)
        self._emit("secrets", "MODIFIED", obj)
        return web.json_response(obj)

    async def _delete_secret(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        obj = self.objects["secrets"].pop(key, None)
        if obj is None:
            return _status(404, "NotFound", f'secrets "{key[1]}" not found')
        self._emit("secrets", "DELETED", obj)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": key[1]}})

    # -- HTTP: pods --------------------------------------------------------------------------------------
    async def _list_pods(self, request: web.Request) -> web.StreamResponse:
        return await self._list_kind("pods", request)

    async def _create_pod(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        pod = await request.json()
        meta = pod.setdefault("metadata", {})
        name = meta.get("name", "")
        if invalid := _invalid_name("Pod", name):
            return invalid
        if (ns, name) in self.objects["pods"]:
            return _status(409, "AlreadyExists", f'pods "{name}" already exists', {"name": name, "kind": "pods"})
        containers = pod.get("spec", {}).get("containers") or []
        if not containers or not all(c.get("image") for c in containers):
            return _status(422, "Invalid", f'Pod "{name}" is invalid: spec.containers[0].image: Required value')
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        pod["status"] = {"phase": "Pending", "qosClass": _qos(containers[0])}
        if request.query.get("dryRun") == "All":
            return web.json_response(pod, status=201)  # validated and admitted, not stored
        self.objects["pods"][(ns, name)] = pod
        self._emit("pods", "ADDED", pod)
        run = _PodRun((ns, name), meta["uid"], self.workdir / "pods" / meta["uid"])
        self._runs[(ns, name)] = run
        run.task = asyncio.ensure_future(self._lifecycle(run))
        return web.json_response(pod, status=201)

    async def _delete_pod_handler(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        if key not in self.objects["pods"]:
            return _status(404, "NotFound", f'pods "{key[1]}" not found', {"name": key[1], "kind": "pods"})
        grace = request.query.get("gracePeriodSeconds")
        pod = await self._delete_pod(key, grace=int(grace) if grace else None, wait=False)
        return web.json_response(pod)

    async def _delete_pod(self, key: tuple[str, str], grace: int | None, wait: bool = True) -> dict[str, Any]:
        pod = self.objects["pods"][key]
        if grace is None:
            grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        if not pod["metadata"].get("deletionTimestamp"):
            pod["metadata"]["deletionTimestamp"] = _now()
            pod["metadata"]["deletionGracePeriodSeconds"] = grace
            self._changed(pod)
            snapshot = copy.deepcopy(pod)
            task = asyncio.ensure_future(self._finish_delete(key, grace))
            if wait:
                await task
            return snapshot
        return copy.deepcopy(pod)

    async def _finish_delete(self, key: tuple[str, str], grace: int) -> None:
        pod = self.objects["pods"].get(key)
        run = self._runs.get(key)
        if pod is not None and run is not None and run.proc and run.proc.returncode is None:
            self._event(pod, "Normal", "Killing", "Stopping container kernel")
        if run is not None:
            await self._kill(run, grace)
        pod = self.objects["pods"].pop(key, None)
        self._runs.pop(key, None)
        for ws in list(self._streams.pop(key, set())):
            await ws.close()
        if pod is None:
            return
        self._emit("pods", "DELETED", pod)
        # garbage collector: dependents whose owner is gone
        uid = pod["metadata"]["uid"]
        for skey, sec in list(self.objects["secrets"].items()):
            if any(r.get("uid") == uid for r in sec["metadata"].get("ownerReferences") or []):
                self.objects["secrets"].pop(skey, None)
                self._emit("secrets", "DELETED", sec)

    async def _kill(self, run: _PodRun, grace: float) -> None:
        run.stopping = True
        for t in (run.task, run.deadline):
            if t and not t.done():
                t.cancel()
        proc = run.proc
        if proc and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), max(grace * self.time_scale, 0.01) if grace else 0.01)
            except asyncio.TimeoutError:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        shutil.rmtree(run.root / "volumes", ignore_errors=True)

    async def _pod_log(self, request: web.Request) -> web.Response:
        key = (request.match_info["ns"], request.match_info["name"])
        run = self._runs.get(key)
        if key not in self.objects["pods"] or run is None:
            return _status(404, "NotFound", f'pods "{key[1]}" not found')
        previous = request.query.get("previous") in ("true", "1")
        logs = run.logs[:-1] if previous else run.logs
        if not logs:
            what = "previous terminated container" if previous else "container"
            return _status(400, "BadRequest", f'{what} "kernel" in pod "{key[1]}" '
                                              f'{"not found" if previous else "is waiting to start: ContainerCreating"}')
        lines = logs[-1].read_text(errors="replace").splitlines(keepends=True)
        tail = request.query.get("tailLines")
        if tail:
            lines = lines[-int(tail):]
        return web.Response(text="".join(lines), content_type="text/plain")

    # -- HTTP: nodes (read only) -----------------------------------------------------------------------
    async def _get_node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if ("get", "nodes", "") in self.denied:
            return _status(403, "Forbidden", f'nodes "{name}" is forbidden: User "{self.user}" cannot get resource '
                                             '"nodes" in API group "" at the cluster scope')
        node = next((n for n in self.nodes if n.name == name), None)
        if node is None:
            return _status(404, "NotFound", f'nodes "{name}" not found', {"name": name, "kind": "nodes"})
        cap = {k: str(int(v)) if k != "memory" else f"{int(v)}Mi" for k, v in node.capacity.items()}
        return web.json_response({"apiVersion": "v1", "kind": "Node",
                                  "metadata": {"name": node.name, "labels": node.labels},
                                  "spec": {"taints": node.taints},
                                  "status": {"capacity": cap, "allocatable": cap}})

    # -- HTTP: SelfSubjectAccessReview ---------------------------------------------------------------
    async def _ssar(self, request: web.Request) -> web.Response:
        body = await request.json()
        attrs = body.get("spec", {}).get("resourceAttributes", {})
        denied = (attrs.get("verb"), attrs.get("resource"), attrs.get("subresource") or "") in self.denied
        body["status"] = {"allowed": not denied}
        if not denied:
            body["status"]["reason"] = f'RBAC: allowed by RoleBinding "airavata-sim/{attrs.get("namespace")}"'
        return web.json_response(body, status=201)

    # -- the scheduler and kubelet --------------------------------------------------------------------
    def _schedule(self, pod: dict[str, Any]) -> tuple[Node | None, str]:
        spec = pod["spec"]
        want: dict[str, float] = {}
        for c in spec["containers"]:
            res = c.get("resources") or {}
            for k, v in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items():
                want[k] = want.get(k, 0) + _quantity(v)
        ns = pod["metadata"]["namespace"]
        for vol in spec.get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and (ns, claim) not in self.objects["persistentvolumeclaims"]:
                n = len(self.nodes)
                return None, (f'0/{n} nodes are available: persistentvolumeclaim "{claim}" not found. '
                              f"preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.")
        if spec.get("nodeName"):
            node = next((n for n in self.nodes if n.name == spec["nodeName"]), None)
            return node, ""  # bound directly; an unknown node leaves the pod Pending, as on a cluster
        reasons: dict[str, int] = {}
        for node in self.nodes:
            why = None
            sel = spec.get("nodeSelector") or {}
            if any(node.labels.get(k) != v for k, v in sel.items()):
                why = "node(s) didn't match Pod's node affinity/selector"
            else:
                for t in node.taints:
                    if t["effect"] in ("NoSchedule", "NoExecute") and not _tolerates(spec.get("tolerations") or [], t):
                        why = f"node(s) had untolerated taint {{{t['key']}: {t.get('value', '')}}}"
                        break
            if why is None:
                used = self._allocated(node.name)
                for k, v in want.items():
                    if used.get(k, 0) + v > node.capacity.get(k, 0) + 1e-9:
                        why = f"Insufficient {k}"
                        break
            if why is None:
                return node, ""
            reasons[why] = reasons.get(why, 0) + 1
        n = len(self.nodes)
        detail = ", ".join(f"{c} {r}" for r, c in sorted(reasons.items()))
        return None, (f"0/{n} nodes are available: {detail}. preemption: 0/{n} nodes are available: "
                      f"{n} Preemption is not helpful for scheduling.")

    def _allocated(self, node: str) -> dict[str, float]:
        used: dict[str, float] = {}
        for pod in self.objects["pods"].values():
            if pod["spec"].get("nodeName") != node or pod["status"].get("phase") in ("Failed", "Succeeded"):
                continue
            for c in pod["spec"]["containers"]:
                res = c.get("resources") or {}
                for k, v in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items():
                    used[k] = used.get(k, 0) + _quantity(v)
        return used

    async def _lifecycle(self, run: _PodRun) -> None:
        try:
            await self._run_pod(run)
        except asyncio.CancelledError:
            pass

    async def _run_pod(self, run: _PodRun) -> None:
        pod = self.objects["pods"][run.key]
        spec, status = pod["spec"], pod["status"]
        await asyncio.sleep(0.005)
        node, message = self._schedule(pod)
        if node is None and not spec.get("nodeName"):
            status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": message, "lastTransitionTime": _now(), "lastProbeTime": None}]
            self._changed(pod)
            self._event(pod, "Warning", "FailedScheduling", message, "default-scheduler")
            return
        if node is None:
            return  # nodeName of a node that does not exist: nothing ever runs it
        by_scheduler = not spec.get("nodeName")
        run.node = spec["nodeName"] = node.name
        status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}]
        status.update(hostIP="192.168.49.2", podIP=f"10.244.0.{next(self._ips) % 250 + 2}", startTime=_now())
        self._changed(pod)
        if by_scheduler:  # a pod given nodeName skips the scheduler, and its event
            self._event(pod, "Normal", "Scheduled", f"Successfully assigned {run.key[0]}/{run.key[1]} to {node.name}",
                        "default-scheduler")
        gpus = int(sum(_quantity((c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu", 0))
                       for c in spec["containers"]))
        taken = {g for r in self._runs.values() if r.node == node.name for g in r.gpus}
        run.gpus = [g for g in range(int(node.capacity.get("nvidia.com/gpu", 0))) if g not in taken][:gpus]
        if spec.get("activeDeadlineSeconds"):
            run.deadline = asyncio.ensure_future(self._deadline(run, spec["activeDeadlineSeconds"]))
        container = spec["containers"][0]
        cstatus: dict[str, Any] = {"name": container["name"], "image": container["image"], "imageID": "",
                                   "ready": False, "started": False, "restartCount": 0,
                                   "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
        status["containerStatuses"] = [cstatus]
        self._changed(pod)
        # volumes: a missing Secret is retried, as the kubelet does
        volumes = await self._mount(run, pod)
        # image
        image = container["image"]
        bindir = self.images.get(image)
        if bindir is None:
            backoff = self.pull_backoff
            while True:
                self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
                why = (f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                       f"{image}: not found")
                self._event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {why}')
                self._event(pod, "Warning", "Failed", "Error: ErrImagePull")
                cstatus["state"] = {"waiting": {"reason": "ErrImagePull", "message": why}}
                self._changed(pod)
                await asyncio.sleep(backoff)
                self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
                self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
                cstatus["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}}
                self._changed(pod)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
        self._event(pod, "Normal", "Pulled", f'Container image "{image}" already present on machine')
        sc = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        if sc.get("runAsNonRoot") and not sc.get("runAsUser"):
            msg = f"container has runAsNonRoot and image will run as root (pod: \"{run.key[1]}_{run.key[0]}({run.uid})\", container: {container['name']})"
            cstatus["state"] = {"waiting": {"reason": "CreateContainerConfigError", "message": msg}}
            self._changed(pod)
            self._event(pod, "Warning", "Failed", f"Error: {msg}")
            return
        backoff = self.crash_backoff
        first_failure = True
        while not run.stopping:
            started = time.monotonic()
            rc = await self._start_container(run, pod, container, cstatus, volumes, bindir)
            if run.stopping:
                return
            term = {"exitCode": rc, "reason": "OOMKilled" if run.oom else ("Completed" if rc == 0 else "Error"),
                    "startedAt": cstatus["state"].get("running", {}).get("startedAt"), "finishedAt": _now(),
                    "containerID": cstatus.get("containerID", "")}
            run.oom = False
            cstatus.update(ready=False, started=False, lastState={"terminated": term}, state={"terminated": term})
            _set_ready(status, False)
            if spec.get("restartPolicy") == "Never" or (spec.get("restartPolicy") == "OnFailure" and rc == 0):
                status["phase"] = "Succeeded" if rc == 0 else "Failed"  # a Job's pod: no restart
                self._changed(pod)
                return
            self._changed(pod)
            if time.monotonic() - started > 20 * self.crash_backoff:
                backoff, first_failure = self.crash_backoff, True  # ran long enough: back-off resets
            if not first_failure:
                msg = (f"back-off {backoff:g}s restarting failed container={container['name']} "
                       f"pod={run.key[1]}_{run.key[0]}({run.uid})")
                cstatus["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
                self._changed(pod)
                self._event(pod, "Warning", "BackOff", f"Back-off restarting failed container {container['name']} "
                                                       f"in pod {run.key[1]}_{run.key[0]}({run.uid})")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10 * self.crash_backoff)
            first_failure = False
            cstatus["restartCount"] += 1

    async def _mount(self, run: _PodRun, pod: dict[str, Any]) -> dict[str, Path]:
        ns = run.key[0]
        out: dict[str, Path] = {}
        for vol in pod["spec"].get("volumes") or []:
            if "persistentVolumeClaim" in vol:  # one directory per claim, shared by every pod
                out[vol["name"]] = self.claim_dir(vol["persistentVolumeClaim"]["claimName"], ns)
                continue
            path = run.root / "volumes" / vol["name"]
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            if "secret" in vol:
                sname = vol["secret"]["secretName"]
                while (ns, sname) not in self.objects["secrets"]:
                    self._event(pod, "Warning", "FailedMount",
                                f'MountVolume.SetUp failed for volume "{vol["name"]}" : secret "{sname}" not found')
                    await asyncio.sleep(0.2)
                mode = vol["secret"].get("defaultMode", 0o644)
                for fname, b64 in (self.objects["secrets"][(ns, sname)].get("data") or {}).items():
                    f = path / fname
                    f.write_bytes(base64.b64decode(b64))
                    os.chmod(f, mode)
            out[vol["name"]] = path
        return out

    async def _start_container(self, run: _PodRun, pod: dict[str, Any], container: dict[str, Any],
                               cstatus: dict[str, Any], volumes: dict[str, Path], bindir: str) -> int:
        mounts = [(m["mountPath"].rstrip("/"), volumes[m["name"]]) for m in container.get("volumeMounts") or []]

        def mapped(s: str) -> str:
            for mount, host in mounts:
                s = s.replace(mount + "/", f"{host}/").replace(mount, str(host)) if mount in s else s
            return s

        argv = [mapped(a) for a in (container.get("command") or []) + (container.get("args") or [])]
        home = run.root / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "HOSTNAME": run.key[1],
               "LANG": "C.UTF-8"}
        env.update({e["name"]: mapped(str(e.get("value", ""))) for e in container.get("env") or []})
        if run.gpus:
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(map(str, run.gpus))
        if self.netns:
            argv = ["unshare", "--net", "--", "/bin/sh", "-c", 'ip link set lo up && exec "$@"', "sim-netns", *argv]
        log = run.root / f"kernel-{len(run.logs)}.log"
        run.logs.append(log)
        with open(log, "wb") as out:
            run.proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=subprocess.STDOUT,
                                                            stdin=subprocess.DEVNULL, env=env, cwd=str(home),
                                                            start_new_session=True)
        cid = f"containerd://{secrets.token_hex(32)}"
        self._event(pod, "Normal", "Created", f"Created container: {container['name']}")
        self._event(pod, "Normal", "Started", f"Started container {container['name']}")
        cstatus.update(containerID=cid, ready=True, started=True, state={"running": {"startedAt": _now()}})
        pod["status"]["phase"] = "Running"
        _set_ready(pod["status"], True)
        self._changed(pod)
        rc = await run.proc.wait()
        return 128 - rc if rc < 0 else rc  # a container killed by signal N exits 128+N

    async def _deadline(self, run: _PodRun, seconds: int) -> None:
        await asyncio.sleep(seconds * self.time_scale)
        pod = self.objects["pods"].get(run.key)
        if pod is None:
            return
        msg = "Pod was active on the node longer than the specified deadline"
        self._event(pod, "Normal", "DeadlineExceeded", msg)
        run.deadline = None
        await self._kill(run, grace=0)
        pod["status"].update(phase="Failed", reason="DeadlineExceeded", message=msg)
        for cs in pod["status"].get("containerStatuses") or []:
            cs.update(ready=False, state={"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": _now()}})
        _set_ready(pod["status"], False)
        self._changed(pod)

    # -- pods/portforward --------------------------------------------------------------------------------
    async def _portforward(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["ns"], request.match_info["name"])
        pod = self.objects["pods"].get(key)
        if pod is None:
            return _status(404, "NotFound", f'pods "{key[1]}" not found')
        ports = [int(p) for v in request.query.getall("ports", []) for p in v.split(",") if p]
        if not ports:
            return _status(400, "BadRequest", "at least one port must be specified")
        run = self._runs.get(key)
        if pod["status"].get("phase") != "Running" or run is None or run.proc is None:
            return _status(400, "BadRequest", f'pod {key[1]} is not running (phase {pod["status"].get("phase")})')
        ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io",), autoping=False)
        if not ws.can_prepare(request).ok:
            return _status(400, "BadRequest", "pods/portforward needs a WebSocket upgrade (v4.channel.k8s.io)")
        await ws.prepare(request)
        self._streams.setdefault(key, set()).add(ws)
        self.stream_log.append((time.monotonic(), key[1], ports[0], "open"))
        writers: dict[int, asyncio.StreamWriter] = {}
        pumps: list[asyncio.Task[Any]] = []
        try:
            for i, port in enumerate(ports):
                prefix = port.to_bytes(2, "little")
                await ws.send_bytes(bytes([2 * i]) + prefix)
                await ws.send_bytes(bytes([2 * i + 1]) + prefix)
                try:
                    sock = await asyncio.get_running_loop().run_in_executor(
                        None, _connect_in_netns, run.proc.pid if self.netns else None, port)
                    reader, writer = await asyncio.open_connection(sock=sock)
                except OSError as e:
                    err = (f"error forwarding port {port} to pod {run.uid}, uid : failed to connect to localhost:{port} "
                           f"inside namespace \"{run.uid}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: {(e.strerror or str(e)).lower()}")
                    await ws.send_bytes(bytes([2 * i + 1]) + err.encode())
                    return ws
                writers[2 * i] = writer
                self.stream_log.append((time.monotonic(), key[1], port, "connected"))
                pumps.append(asyncio.ensure_future(_pump(reader, ws, 2 * i)))
            while True:
                try:
                    msg = await ws.receive(timeout=self.stream_idle_timeout)
                except asyncio.TimeoutError:
                    break  # idle too long: cut, as a load balancer would
                if msg.type == WSMsgType.PING:
                    self.pings += 1
                    await ws.pong(msg.data)
                    continue
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                if msg.type != WSMsgType.BINARY or not msg.data:
                    continue
                w = writers.get(msg.data[0])
                if w is not None and len(msg.data) > 1:
                    w.write(msg.data[1:])
                    await w.drain()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for t in pumps:
                t.cancel()
            for w in writers.values():
                w.close()
            self._streams.get(key, set()).discard(ws)
            self.stream_log.append((time.monotonic(), key[1], ports[0], "closed"))
            await ws.close()
        return ws


async def _pump(reader: asyncio.StreamReader, ws: web.WebSocketResponse, channel: int) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await ws.send_bytes(bytes([channel]) + data)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await ws.close()


def _connect_in_netns(pid: int | None, port: int) -> socket.socket:
    """Connect to 127.0.0.1:port inside the network namespace of ``pid`` (the pod's loopback).

    A socket belongs to the namespace it was created in, so a throwaway thread enters the pod's
    namespace, connects, and exits; the socket keeps working from any thread.
    """
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            if pid is not None:
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
                fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns failed")
                finally:
                    os.close(fd)
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            result["sock"] = s
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def _netns_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        return subprocess.run(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _set_ready(status: dict[str, Any], ready: bool) -> None:
    conds = [c for c in status.get("conditions") or [] if c["type"] not in ("Initialized", "ContainersReady", "Ready")]
    value = "True" if ready else "False"
    conds += [{"type": "Initialized", "status": "True"}, {"type": "ContainersReady", "status": value},
              {"type": "Ready", "status": value}]
    status["conditions"] = conds


def _qos(container: dict[str, Any]) -> str:
    res = container.get("resources") or {}
    if not res:
        return "BestEffort"
    lim, req = res.get("limits") or {}, res.get("requests") or {}
    return "Guaranteed" if {"cpu", "memory"} <= set(lim) and req == lim else "Burstable"


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            _merge_patch(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


def _invalid_name(kind: str, name: str) -> web.Response | None:
    if name and len(name) <= 253 and _DNS_SUBDOMAIN.match(name):
        return None
    return _status(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase '
                                   "RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                                   "and must start and end with an alphanumeric character")


def _self_signed(workdir: Path) -> tuple[str, str, bytes]:
    """A CA-less self-signed server certificate for 127.0.0.1 (the kubeconfig trusts exactly it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-simulator")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = workdir / "apiserver.crt", workdir / "apiserver.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return str(cert_path), str(key_path), pem


def main(argv: list[str] | None = None) -> None:
    """Serve a simulator until stdin closes: ``python -m tests.k8s.simulator WORKDIR IMAGE=BINDIR...``.

    Prints one JSON line with the kubeconfig path and URL. Benchmarks use this to keep the
    simulator out of their own process (and its GIL).
    """
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m tests.k8s.simulator WORKDIR [IMAGE=BINDIR ...]")
    images = dict(a.split("=", 1) for a in args[1:])
    sim = Simulator(Path(args[0]), images).start()
    print(json.dumps({"kubeconfig": str(sim.kubeconfig), "url": sim.url, "netns": sim.netns}), flush=True)
    try:
        sys.stdin.read()
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
