"""Training tasks on Kubernetes: one batch/v1 Job per task (the cluster's scheduler is the queue).

The notebook and the pod share no file system, so everything goes through the API server, the
way fan-out does it (``fanout/kubernetes.py``) and with the backend's client (``KubeApi``):

- in: one Secret per task (a Secret rather than a ConfigMap: the data and weights are the user's)
  holding ``pod.py`` and ``task.tgz``, the staged task folder (package, data, ``train.py``,
  initial weights), at most ``MAX_PAYLOAD`` bytes compressed. It is mounted read-only; the pod
  unpacks it into an emptyDir and runs ``train.py`` there. The Secret is owned by the Job, so it
  goes when the Job does.
- out: ``pod.py`` prints every status change and metric line to the pod log as marked lines, and
  at the end a base64 tar of status, metrics and weights between the fan-out's output markers.
  ``observe`` reads the log of each live task and mirrors it into the task's local folder
  (``status.json``, ``metrics.jsonl``, ``job.log``, the weights), so ``read`` is a local read and
  a task's results outlive its Job (``ttlSecondsAfterFinished``).

States come from the Job and its pod (``job_view``, a pure function): the Job's ``Complete`` or
``Failed`` condition, else the pod's phase; a Job deleted before its task ended was killed.
``cancel`` deletes the Job (its pod gets SIGTERM) and the Secret.
"""
from __future__ import annotations

import base64
import io
import re
import tarfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from .. import paths
from ..errors import AiravataError, InvalidArgument
from ..fanout.engine import extract_tar
from ..fanout.kubernetes import BEGIN, END, outputs_from_log
from .remote.pod import MARK
from .schedulers import CANCELLED, ENDED, FAILED, PENDING, RUNNING, JobView, read_file

if TYPE_CHECKING:
    from ..backends.kubernetes.manifests import PodRequest
    from ..profile import Resource

RUN_MOUNT = "/airavata/run"  # the Secret: pod.py and task.tgz
WORK_MOUNT = "/airavata/task"  # an emptyDir: the unpacked task folder, where train.py writes
LABEL_TASK = "airavata-magic/task"
MAX_PAYLOAD = 900 * 1024  # a Secret holds at most 1 MiB
TTL_S = 7 * 86400  # a finished Job (and its log) stays a week; results are copied out long before
HARVESTED = ".harvested"  # in the local task folder: the final outputs came back
_JOB = re.compile(r"^am-task\d{16}$")


def job_name(task_id: str) -> str:
    """The Job (and Secret) name of a task: ``TASK2026...`` -> ``am-task2026...``."""
    return f"am-{task_id.lower()}"


def pack(staged: Path) -> bytes:
    """The staged task folder as a gzipped tar (what the pod unpacks)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(staged.rglob("*")):
            rel = path.relative_to(staged)
            if path.is_file() and path.name != "job.log" and "__pycache__" not in rel.parts:
                tar.add(path, arcname=rel.as_posix())
    return buf.getvalue()


def _labels(task_id: str, owner: str) -> dict[str, str]:
    from ..backends.kubernetes.manifests import LABEL_OWNER, MANAGED_BY, label_value

    return {MANAGED_BY: "airavata-magic", LABEL_OWNER: label_value(owner), LABEL_TASK: task_id}


def render_secret(*, name: str, namespace: str, task_id: str, owner: str, files: dict[str, bytes]) -> dict[str, Any]:
    """The Secret carrying ``pod.py`` and the task archive (one line of error when too large)."""
    size = sum(len(v) for v in files.values())
    if size > MAX_PAYLOAD:
        raise InvalidArgument(f"the task's package, data and weights come to {size // 1024} KiB compressed; a "
                              f"Kubernetes task ships at most {MAX_PAYLOAD // 1024} KiB with its Job: use smaller "
                              "data, name a storage_claim for the resource, or train on a slurm or local runtime")
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
            "metadata": {"name": name, "namespace": namespace, "labels": _labels(task_id, owner)},
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()}}


def render_job(req: "PodRequest", task_id: str, work_in_claim: str | None = None) -> dict[str, Any]:
    """The Job of one task (pure; ``req`` is the backend's PodRequest, named after the Job).
    ``work_in_claim``: the task folder in the resource's claim (``claimtasks``), which the pod
    mounts; else the task is unpacked from the Secret into an emptyDir."""
    from ..backends.kubernetes.manifests import container_resources, place

    labels = _labels(task_id, req.owner)
    container: dict[str, Any] = {
        "name": "task", "image": req.image, "imagePullPolicy": "IfNotPresent",
        "command": [req.python, f"{RUN_MOUNT}/pod.py", "-", work_in_claim, "--weights-stay"] if work_in_claim else
                   [req.python, f"{RUN_MOUNT}/pod.py", f"{RUN_MOUNT}/task.tgz", WORK_MOUNT],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        "volumeMounts": [{"name": "run", "mountPath": RUN_MOUNT, "readOnly": True},
                         {"name": "task", "mountPath": WORK_MOUNT}],
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    resources = container_resources(req)  # requests == limits, as for runtime pods (GPUs need it)
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never", "enableServiceLinks": False, "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 10,
        # fsGroup: the Secret's files (mode 0440) are readable by the pod's non-root user
        "securityContext": {"runAsNonRoot": True, "runAsUser": req.run_as_user, "runAsGroup": req.run_as_group,
                            "fsGroup": req.run_as_group, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "run", "secret": {"secretName": req.name, "defaultMode": 0o440}},
                    {"name": "task", "emptyDir": {}}],
    }
    if req.storage_claim:
        spec["volumes"].append({"name": "storage", "persistentVolumeClaim": {"claimName": req.storage_claim}})
        container["volumeMounts"].append({"name": "storage", "mountPath": req.storage_mount})
    place(spec, req)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": req.name, "namespace": req.namespace, "labels": labels},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": TTL_S,
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}}


# -- what the Job and its pod say ---------------------------------------------------------------
def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if (cs.get("state") or {}).get("terminated"):
            return cs["state"]["terminated"]
    return {}


def pod_failure(pod: dict[str, Any] | None) -> str:
    """Why a pod failed, in one phrase (``OOMKilled (exit code 137)``), or ''."""
    if not pod:
        return ""
    st = pod.get("status") or {}
    if st.get("reason"):  # DeadlineExceeded, Evicted: the pod's own word
        return f"{st['reason']}: {st.get('message', '')}".rstrip(": ")
    term = _terminated(pod)
    if term:
        return f"{term.get('reason') or 'exited'} (exit code {term.get('exitCode')})"
    return ""


def pending_reason(pod: dict[str, Any] | None) -> str:
    """Why a pod has not started: an image that cannot be pulled, a pod no node can take."""
    if not pod:
        return "waiting for the Job's pod"
    st = pod.get("status") or {}
    for cs in st.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
            return f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
    for c in st.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return f"{c.get('reason', 'Unschedulable')}: {c.get('message', '')}".rstrip(": ")
    return "pod pending"


def job_view(job: dict[str, Any] | None, pod: dict[str, Any] | None, own_state: str | None = None) -> JobView:
    """A task's JobView from its Job, its pod and (for a Job that is gone) its last known state."""
    if job is None:
        if own_state in ("FINISHED", "FAILED"):
            return JobView(ENDED, "the Job is gone (deleted after it finished)")
        return JobView(CANCELLED, "the Job was deleted before the task ended")
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True"}
    if "Failed" in conditions:
        c = conditions["Failed"]
        why = pod_failure(pod) or f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")
        return JobView(FAILED, f"Kubernetes Job failed: {why or 'no reason given'}")
    if "Complete" in conditions:
        return JobView(ENDED)
    phase = ((pod or {}).get("status") or {}).get("phase")
    if phase == "Succeeded":
        return JobView(ENDED)
    if phase == "Failed":
        return JobView(FAILED, f"the Job's pod failed: {pod_failure(pod) or 'no reason given'}")
    if phase == "Running":
        return JobView(RUNNING)
    return JobView(PENDING, pending_reason(pod))


def harvest(log: str, folder: Path) -> bool:
    """Mirror a task pod's log into its local folder; True once the final outputs came back
    (the caller then marks the folder ``HARVESTED``)."""
    status, metrics, rest, inside = None, [], [], False
    for line in log.splitlines():
        if line in (BEGIN, END):
            inside = line == BEGIN
        elif inside:
            continue
        elif line.startswith(f"{MARK} status "):
            status = line[len(MARK) + 8:]
        elif line.startswith(f"{MARK} metrics "):
            metrics.append(line[len(MARK) + 9:])
        else:
            rest.append(line)
    paths.write_private(folder / "job.log", "\n".join(rest) + "\n", fsync=False)
    data = outputs_from_log(log)
    if data is not None:
        extract_tar(data, folder)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for name in tar.getnames():  # private, whatever mode the pod gave them
                if (folder / name).is_file():
                    (folder / name).chmod(0o600)
        return True
    if status is not None:
        paths.write_private(folder / "status.json", status, fsync=False)
    if metrics:
        paths.write_private(folder / "metrics.jsonl", "\n".join(metrics) + "\n", fsync=False)
    return False


def _own_state(folder: Path) -> str | None:
    import json

    try:
        return json.loads((folder / "status.json").read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None


class KubernetesScheduler:
    """Tasks as Jobs on a ``kubernetes`` resource, through the backend's API client."""

    kind = "kubernetes"

    def __init__(self, resource: "Resource", profile: str | None = None) -> None:
        from ..backends.kubernetes import KubernetesBackend

        self.resource, self.profile = resource, profile
        self.backend = KubernetesBackend(resource, lambda name: None)

    def _call(self, api: str, method: str, *args: Any, **kw: Any) -> Any:
        return self.backend._call(api, method, *args, **kw)  # noqa: SLF001 - the backend's one API path

    def submit(self, task_id: str, staged: Path, spec: Any, links: dict[str, str]) -> tuple[str, str]:
        name = job_name(task_id)
        req = replace(self.backend.pod_request(SimpleNamespace(name=name, spec=spec)), name=name)
        files = {"pod.py": (Path(__file__).parent / "remote" / "pod.py").read_bytes()}
        work = None
        if req.storage_claim:  # the task folder goes into the claim: no size limit (claimtasks.py)
            from .claimtasks import stage

            work = stage(self.resource.name, self.profile, task_id, staged, links)
        elif links:
            raise InvalidArgument(f"{next(iter(links.values()))} is a path on {self.resource.name}, which names no "
                                  "storage_claim: give a local .npz file or a hub dataset (they travel with the Job)")
        else:
            files["task.tgz"] = pack(staged)
        secret = render_secret(name=name, namespace=req.namespace, task_id=task_id, owner=req.owner, files=files)
        job = render_job(req, task_id, work)
        ns = req.namespace
        self._call("CoreV1Api", "create_namespaced_secret", ns, secret)
        try:
            created = self._call("BatchV1Api", "create_namespaced_job", ns, job)
        except BaseException:
            self._call("CoreV1Api", "delete_namespaced_secret", name, ns, missing_ok=True)
            raise
        try:  # the Secret goes with the Job (its time to live, a kubectl delete)
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": created["metadata"]["uid"]}
            self._call("CoreV1Api", "patch_namespaced_secret", name, ns, {"metadata": {"ownerReferences": [owner]}})
        except AiravataError:
            pass  # cancel() deletes it by name
        return name, str(staged)

    def observe(self, jobs: dict[str, str]) -> dict[str, JobView]:
        if not jobs:
            return {}
        from .tasks import staging

        ns = self.backend.namespace
        from ..backends.kubernetes.manifests import owner_selector

        sel = f"{owner_selector(self.backend.owner)},{LABEL_TASK}"  # this user's tasks, one listing each
        found = {j["metadata"]["name"]: j for j in self._call("BatchV1Api", "list_namespaced_job", ns,
                                                               label_selector=sel).get("items", [])}
        pods: dict[str, dict[str, Any]] = {}
        for p in sorted(self._call("CoreV1Api", "list_namespaced_pod", ns, label_selector=sel).get("items", []),
                        key=lambda p: p["metadata"].get("creationTimestamp", "")):
            labels = p["metadata"].get("labels") or {}
            pods[labels.get("batch.kubernetes.io/job-name") or labels.get("job-name", "")] = p  # the newest wins
        out = {}
        for task_id, name in jobs.items():
            folder = staging(task_id)
            pod = pods.get(name)
            started = ((pod or {}).get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed")
            if started and not (folder / HARVESTED).exists():
                try:
                    log = self._call("CoreV1Api", "read_namespaced_pod_log", pod["metadata"]["name"], ns, missing_ok=True)
                except AiravataError:
                    log = None  # e.g. the container is only just starting: next time
                if log is not None and harvest(log, folder):
                    if (folder / "claim.json").exists():  # the weights stayed in the claim
                        from .claimtasks import fetch_weights

                        fetch_weights(folder)
                    paths.write_private(folder / HARVESTED, b"", fsync=False)
            out[task_id] = job_view(found.get(name), pod, _own_state(folder))
        return out

    def read(self, task_dir: str, name: str, max_bytes: int | None = None) -> bytes | None:
        return read_file(task_dir, name, max_bytes)  # observe() keeps the local folder up to date

    def cancel(self, job_id: str) -> None:
        if not _JOB.match(job_id):
            raise InvalidArgument(f"{job_id!r} is not a task's Job name")
        ns = self.backend.namespace
        self._call("BatchV1Api", "delete_namespaced_job", job_id, ns, missing_ok=True, propagation_policy="Background")
        self._call("CoreV1Api", "delete_namespaced_secret", job_id, ns, missing_ok=True)
