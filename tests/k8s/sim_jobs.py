"""batch/v1 Jobs and headless Services for the Kubernetes API **simulator** (``simulator.py``;
still not a cluster).

Serves create, get, list (label selector) and delete of Jobs and Services, and runs a small Job controller per
Job, as kube-controller-manager does, with the behaviour fan-out relies on:

- ``completionMode: Indexed``: ``completions`` indexes, at most ``parallelism`` pods at once; each
  pod gets the ``batch.kubernetes.io/job-completion-index`` annotation and label,
  ``JOB_COMPLETION_INDEX`` in its environment, the ``batch.kubernetes.io/job-name`` and
  ``job-name`` labels, and an ownerReference to the Job;
- ``backoffLimitPerIndex``: a failed index is retried that many times, then counted in
  ``status.failedIndexes``; ``maxFailedIndexes`` ends the Job once exceeded; without a per-index
  limit, ``backoffLimit`` (default 6) counts failures over the whole Job;
- ``status``: ``active``, ``succeeded``, ``failed``, ``completedIndexes``, ``failedIndexes``,
  conditions ``Complete`` or ``Failed`` (reason ``FailedIndexes`` / ``BackoffLimitExceeded``);
- deleting a Job (any propagation policy) deletes its pods;
- Indexed pods get ``hostname: <job>-<index>``; with ``subdomain`` naming a headless Service, the
  name ``<job>-<index>.<service>`` is that pod's. The simulator has no DNS: where pods share the
  host's loopback (``netns=False``, the simulated cluster network), such a name in a container's
  environment is replaced by ``127.0.0.1`` when the pod is created, as a resolver would.

NonIndexed Jobs run ``completions`` interchangeable pods the same way. Pods are created through
the simulator's own pod path, so its scheduler and kubelet run them (``restartPolicy: Never``
pods end Succeeded or Failed). Hooked into the simulator with one line in ``Simulator._serve``.
"""
from __future__ import annotations

import asyncio
import copy
import secrets
import uuid
from typing import Any

from aiohttp import web

BASE = "/apis/batch/v1/namespaces/{ns}/jobs"
INDEX = "batch.kubernetes.io/job-completion-index"


def register_jobs(sim: Any, router: web.UrlDispatcher) -> None:
    """Add the Job routes to the simulator's router."""
    sim.objects.setdefault("jobs", {})
    ctl = _Jobs(sim)
    router.add_post(BASE, ctl.create)
    router.add_get(BASE, ctl.list)
    router.add_get(BASE + "/{name}", ctl.get)
    router.add_delete(BASE + "/{name}", ctl.delete)
    sim.objects.setdefault("services", {})
    svc = "/api/v1/namespaces/{ns}/services"
    router.add_post(svc, ctl.create_service)
    router.add_get(svc + "/{name}", ctl.get_service)
    router.add_delete(svc + "/{name}", ctl.delete_service)


def _ranges(indexes: set[int]) -> str:
    """``{0,1,2,5}`` -> ``"0-2,5"`` (the format of completedIndexes)."""
    out, items = [], sorted(indexes)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


class _Jobs:
    def __init__(self, sim: Any) -> None:
        self.sim = sim

    @property
    def jobs(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self.sim.objects["jobs"]

    async def create(self, request: web.Request) -> web.Response:
        from .simulator import _invalid_name, _now, _status

        ns = request.match_info["ns"]
        job = await request.json()
        meta = job.setdefault("metadata", {})
        name = meta.get("name", "")
        if invalid := _invalid_name("Job", name):
            return invalid
        if (ns, name) in self.jobs:
            return _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists', {"name": name, "kind": "jobs"})
        spec = job.get("spec") or {}
        pod_spec = ((spec.get("template") or {}).get("spec")) or {}
        if pod_spec.get("restartPolicy") not in ("Never", "OnFailure"):
            return _status(422, "Invalid", f'Job.batch "{name}" is invalid: spec.template.spec.restartPolicy: '
                                           'Required value: valid values: "OnFailure", "Never"')
        if spec.get("completionMode") == "Indexed" and not spec.get("completions"):
            return _status(422, "Invalid", f'Job.batch "{name}" is invalid: spec.completions: Required value: '
                                           "when completion mode is Indexed")
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        job["status"] = {"active": 0, "succeeded": 0, "failed": 0, "startTime": _now()}
        self.jobs[(ns, name)] = job
        asyncio.ensure_future(self._control((ns, name)))
        return web.json_response(job, status=201)

    async def get(self, request: web.Request) -> web.Response:
        from .simulator import _status

        key = (request.match_info["ns"], request.match_info["name"])
        job = self.jobs.get(key)
        if job is None:
            return _status(404, "NotFound", f'jobs.batch "{key[1]}" not found', {"name": key[1], "kind": "jobs"})
        return web.json_response(job)

    async def list(self, request: web.Request) -> web.Response:
        from .simulator import matches_labels

        ns, sel = request.match_info["ns"], request.query.get("labelSelector", "")
        items = [j for (n, _), j in self.jobs.items() if n == ns and matches_labels(j["metadata"].get("labels") or {}, sel)]
        return web.json_response({"kind": "JobList", "apiVersion": "batch/v1",
                                  "metadata": {"resourceVersion": str(self.sim._current_rv())}, "items": items})

    async def delete(self, request: web.Request) -> web.Response:
        from .simulator import _status

        key = (request.match_info["ns"], request.match_info["name"])
        job = self.jobs.pop(key, None)
        if job is None:
            return _status(404, "NotFound", f'jobs.batch "{key[1]}" not found', {"name": key[1], "kind": "jobs"})
        await self._delete_pods(job)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success",
                                  "details": {"name": key[1], "group": "batch", "kind": "jobs", "uid": job["metadata"]["uid"]}})

    # -- Services (headless: no cluster IP, no proxying; only names) --------------------------------
    async def create_service(self, request: web.Request) -> web.Response:
        from .simulator import _invalid_name, _now, _status

        ns = request.match_info["ns"]
        svc = await request.json()
        meta = svc.setdefault("metadata", {})
        name = meta.get("name", "")
        if invalid := _invalid_name("Service", name):
            return invalid
        if (ns, name) in self.sim.objects["services"]:
            return _status(409, "AlreadyExists", f'services "{name}" already exists', {"name": name, "kind": "services"})
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=_now())
        svc.setdefault("status", {"loadBalancer": {}})
        self.sim.objects["services"][(ns, name)] = svc
        return web.json_response(svc, status=201)

    async def get_service(self, request: web.Request) -> web.Response:
        from .simulator import _status

        key = (request.match_info["ns"], request.match_info["name"])
        svc = self.sim.objects["services"].get(key)
        if svc is None:
            return _status(404, "NotFound", f'services "{key[1]}" not found', {"name": key[1], "kind": "services"})
        return web.json_response(svc)

    async def delete_service(self, request: web.Request) -> web.Response:
        from .simulator import _status

        key = (request.match_info["ns"], request.match_info["name"])
        svc = self.sim.objects["services"].pop(key, None)
        if svc is None:
            return _status(404, "NotFound", f'services "{key[1]}" not found', {"name": key[1], "kind": "services"})
        return web.json_response(svc)

    def _resolve(self, ns: str, value: str) -> str:
        """``<job>-<i>.<headless service>`` -> 127.0.0.1 on the shared loopback (see module docstring)."""
        host, dot, svc = value.partition(".")
        if not dot or self.sim.netns or (ns, svc.split(".")[0]) not in self.sim.objects["services"]:
            return value
        spec = self.sim.objects["services"][(ns, svc.split(".")[0])].get("spec") or {}
        return "127.0.0.1" if spec.get("clusterIP") == "None" and host.rsplit("-", 1)[-1].isdigit() else value

    async def _delete_pods(self, job: dict[str, Any]) -> None:
        uid = job["metadata"]["uid"]
        for key, pod in list(self.sim.objects["pods"].items()):
            if any(r.get("uid") == uid for r in pod["metadata"].get("ownerReferences") or []):
                await self.sim._delete_pod(key, grace=0, wait=False)

    # -- the controller ------------------------------------------------------------------------
    def _new_pod(self, job: dict[str, Any], index: int | None) -> tuple[str, str]:
        from .simulator import _PodRun, _now, _qos

        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        tmpl = copy.deepcopy(job["spec"]["template"])
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": tmpl.get("metadata") or {}, "spec": tmpl["spec"]}
        meta = pod["metadata"]
        pname = f"{name}-{'' if index is None else f'{index}-'}{secrets.token_hex(3)[:5]}"
        labels = dict(meta.get("labels") or {}, **{"batch.kubernetes.io/job-name": name, "job-name": name,
                                                   "batch.kubernetes.io/controller-uid": job["metadata"]["uid"]})
        annotations = dict(meta.get("annotations") or {})
        if index is not None:
            labels[INDEX] = annotations[INDEX] = str(index)
            pod["spec"]["hostname"] = f"{name}-{index}"
            for c in pod["spec"]["containers"]:
                env = [dict(e, value=self._resolve(ns, str(e["value"]))) if "value" in e else e for e in c.get("env") or []]
                c["env"] = [*env, {"name": "JOB_COMPLETION_INDEX", "value": str(index)}]
        meta.update(name=pname, namespace=ns, labels=labels, annotations=annotations, uid=str(uuid.uuid4()),
                    creationTimestamp=_now(),
                    ownerReferences=[{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                      "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}])
        pod["status"] = {"phase": "Pending", "qosClass": _qos(pod["spec"]["containers"][0])}
        self.sim.objects["pods"][(ns, pname)] = pod
        self.sim._emit("pods", "ADDED", pod)
        run = _PodRun((ns, pname), meta["uid"], self.sim.workdir / "pods" / meta["uid"])
        self.sim._runs[(ns, pname)] = run
        run.task = asyncio.ensure_future(self.sim._lifecycle(run))
        return ns, pname

    async def _control(self, key: tuple[str, str]) -> None:
        from .simulator import _now

        job = self.jobs[key]
        spec = job["spec"]
        indexed = spec.get("completionMode") == "Indexed"
        n = int(spec.get("completions") or 1)
        par = int(spec.get("parallelism", 1))
        per_index = spec.get("backoffLimitPerIndex")
        max_failed_indexes = spec.get("maxFailedIndexes")
        backoff_limit = int(spec.get("backoffLimit", 6))
        queue: list[int] = list(range(n))
        running: dict[tuple[str, str], int] = {}
        tries: dict[int, int] = {}
        done: set[int] = set()
        failed_idx: set[int] = set()
        failures = 0
        while key in self.jobs:
            while queue and len(running) < par:
                i = queue.pop(0)
                running[self._new_pod(job, i if indexed else None)] = i
            for pkey, i in list(running.items()):
                pod = self.sim.objects["pods"].get(pkey)
                phase = (pod or {}).get("status", {}).get("phase")
                if pod is None or phase == "Failed":
                    running.pop(pkey)
                    failures += 1
                    tries[i] = tries.get(i, 0) + 1
                    if per_index is not None and tries[i] > int(per_index):
                        failed_idx.add(i)
                    elif per_index is None and failures > backoff_limit:
                        failed_idx.add(i)
                    else:
                        queue.append(i)
                elif phase == "Succeeded":
                    running.pop(pkey)
                    done.add(i)
            status = job["status"]
            status.update(active=len(running), succeeded=len(done), failed=failures)
            if indexed:
                status["completedIndexes"] = _ranges(done)
                if per_index is not None:
                    status["failedIndexes"] = _ranges(failed_idx)
            too_many = max_failed_indexes is not None and len(failed_idx) > int(max_failed_indexes)
            if len(done) + len(failed_idx) >= n or too_many or (per_index is None and failed_idx):
                if failed_idx or too_many:
                    reason = "FailedIndexes" if per_index is not None else "BackoffLimitExceeded"
                    status["conditions"] = [{"type": "Failed", "status": "True", "reason": reason,
                                             "message": "Job has failed indexes" if per_index is not None else
                                             "Job has reached the specified backoff limit", "lastTransitionTime": _now()}]
                    for pkey in list(running):  # what still runs is terminated, as the controller does
                        await self.sim._delete_pod(pkey, grace=0, wait=False)
                else:
                    status["conditions"] = [{"type": "Complete", "status": "True", "lastTransitionTime": _now()}]
                    status["completionTime"] = _now()
                status["active"] = 0
                return
            await asyncio.sleep(0.05)
