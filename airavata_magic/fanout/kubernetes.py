"""Fan-out on Kubernetes: one Indexed Job per submission (``completionMode: Indexed``,
``parallelism: N``; each pod picks its line of the list by ``JOB_COMPLETION_INDEX``).

What a pod needs travels in one Secret mounted read-only at ``/airavata/run`` (a Secret rather
than a ConfigMap: the inputs are the user's data, and Secrets are the kind RBAC keeps private):
the algorithm, the list file and the (small, at most ``MAX_PAYLOAD`` bytes) inputs. A task writes
its outputs into an emptyDir and, last, prints them as a base64 tar between two marker lines of
its log, so they come back through the API server with no shared volume: ``fetch`` reads the
pod log. Inputs too large for the Secret can live in the resource's PersistentVolumeClaim
(``storage_claim``): ``RESOURCE:/path/*.h5`` globs there (through a pod that mounts it), and the
Job's pods mount the claim where runtime pods do. ``backoffLimitPerIndex: 0``: a failed index is not retried by the Job; ``--retry``
reruns exactly the failed inputs, as on Slurm.
"""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgument
from .engine import DONE, FAILED, PENDING, RUNNING, Engine, TaskStatus, extract_tar
from .record import Submission, list_file_text, task_dir_name

if TYPE_CHECKING:
    from ..backends.base import Resource
    from .record import FanoutRun

RUN_MOUNT = "/airavata/run"
OUT_MOUNT = "/airavata/out"
BEGIN, END = "@@airavata-outputs-begin", "@@airavata-outputs-end"
MAX_PAYLOAD = 900 * 1024  # a Secret holds at most 1 MiB
LABEL_RUN = "airavata-magic/fanout-run"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"

TASK_SCRIPT = r"""set -u
line=$(sed -n "$((JOB_COMPLETION_INDEX + 1))p" "$1")
task=${line%%	*}
input=${line#*	}
case "$input" in /*) ;; *) input="$2/$input" ;; esac
out="$3/$(printf '%05d' "$task")"
mkdir -p "$out"
"$4" "$5" "$input" "$out" > "$out/stdout.log" 2> "$out/stderr.log"
rc=$?
echo "$rc" > "$out/exit"
echo "@@airavata-outputs-begin"
tar -C "$3" -cf - . | base64
echo "@@airavata-outputs-end"
exit "$rc"
"""


def _name(run_id: str, seq: int) -> str:
    # fo-20261130-091502-3fa2 -> fo-20261130-091502-3fa2-s0: a DNS-1123 label of at most 63 chars
    return f"{run_id}-s{seq}".lower()


def render_job(*, name: str, run_id: str, namespace: str, image: str, python: str, algorithm: str,
               list_key: str, count: int, parallel: int, labels: dict[str, str] | None = None,
               cpus: int | None = None, memory_mb: int | None = None, node_selector: dict[str, str] | None = None,
               tolerations: list[dict[str, Any]] | None = None, run_as_user: int = 1000, run_as_group: int = 100,
               claim: tuple[str, str] | None = None) -> dict[str, Any]:
    """The Indexed Job of one submission (pure; validated against the official schema in tests)."""
    resources: dict[str, Any] = {}
    if cpus or memory_mb:
        req = {k: v for k, v in (("cpu", str(cpus) if cpus else None), ("memory", f"{memory_mb}Mi" if memory_mb else None)) if v}
        resources = {"requests": req, "limits": dict(req)}
    lab = {"app.kubernetes.io/managed-by": "airavata-magic", LABEL_RUN: run_id, **(labels or {})}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # fsGroup: the Secret's files (0440) belong to this group, so the non-root task can read them
        "securityContext": {"runAsNonRoot": True, "runAsUser": run_as_user, "runAsGroup": run_as_group,
                            "fsGroup": run_as_group},
        "containers": [{
            "name": "task", "image": image,
            "command": ["sh", "-c", TASK_SCRIPT, "airavata-task", f"{RUN_MOUNT}/{list_key}", RUN_MOUNT, OUT_MOUNT,
                        python, f"{RUN_MOUNT}/{algorithm}"],
            "resources": resources,
            "volumeMounts": [{"name": "run", "mountPath": RUN_MOUNT, "readOnly": True},
                             {"name": "out", "mountPath": OUT_MOUNT}],
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
        "volumes": [{"name": "run", "secret": {"secretName": name, "defaultMode": 0o440}},
                    {"name": "out", "emptyDir": {}}],
    }
    if claim:  # (claim name, mount path): inputs in the resource's PersistentVolumeClaim
        pod_spec["volumes"].append({"name": "storage", "persistentVolumeClaim": {"claimName": claim[0], "readOnly": True}})
        pod_spec["containers"][0]["volumeMounts"].append({"name": "storage", "mountPath": claim[1], "readOnly": True})
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(t) for t in tolerations]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": lab},
        "spec": {
            "completionMode": "Indexed", "completions": count, "parallelism": min(parallel, count),
            "backoffLimitPerIndex": 0, "ttlSecondsAfterFinished": 86400,
            "template": {"metadata": {"labels": lab}, "spec": pod_spec},
        },
    }


def render_payload(*, name: str, run_id: str, namespace: str, files: dict[str, bytes]) -> dict[str, Any]:
    """The Secret carrying the algorithm, the list file and the staged inputs."""
    size = sum(len(v) for v in files.values())
    if size > MAX_PAYLOAD:
        raise InvalidArgument(f"the inputs and algorithm come to {size // 1024} KiB; a Kubernetes fan-out ships at "
                              f"most {MAX_PAYLOAD // 1024} KiB with the Job: put larger inputs in the image or a volume")
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "airavata-magic", LABEL_RUN: run_id}},
            "data": {k: base64.b64encode(v).decode() for k, v in files.items()}}


def outputs_from_log(log: str) -> bytes | None:
    """The tar a task printed between the markers of its log, or None."""
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), log, re.S)
    if not m:
        return None
    try:
        return base64.b64decode("".join(m.group(1).split()), validate=True)
    except ValueError:
        return None


class KubernetesEngine(Engine):
    """Indexed Jobs through the Kubernetes API (the backend's client and kubeconfig handling)."""

    kind = "kubernetes"
    needs_staging = True

    def __init__(self, resource: "Resource") -> None:
        super().__init__(resource)
        from ..backends.kubernetes import KubernetesBackend

        self.backend = KubernetesBackend(resource, lambda name: None)
        self._staged: dict[str, bytes] = {}

    def _call(self, api: str, method: str, *args: Any, **kw: Any) -> Any:
        return self.backend._call(api, method, *args, **kw)

    # -- what the resource sees: key names in the payload ------------------------------------
    def run_dir(self, run_id: str) -> str:
        return RUN_MOUNT

    def _claim(self) -> tuple[str, str] | None:
        from ..backends.kubernetes.settings import storage_claim_of

        return storage_claim_of(self.backend.settings)

    def glob(self, pattern: str) -> list[str]:
        if self._claim() is None:
            raise InvalidArgument(f"{self.resource.name} names no storage_claim: give local inputs (they travel with "
                                  f"the Job), or name a PersistentVolumeClaim in the profile and glob {self.resource.name}:/path")
        from ..profile import load_profile
        from ..storage import claims, locations

        loc = locations.parse("fan-out inputs", f"{self.resource.name}:/", "profile", load_profile(self.profile_path))
        return claims.glob_files(loc, pattern)

    def input_name(self, path: str) -> str:
        claim = self._claim()  # a path in the claim, as the user wrote it (without the mount path)
        if claim and path.startswith(claim[1].rstrip("/") + "/"):
            path = path[len(claim[1].rstrip("/")):]
        return f"{self.resource.name}:{path}"

    def is_file(self, path: str) -> bool:
        raise InvalidArgument("on a kubernetes resource, give a local algorithm file (it travels with the Job)")

    def upload(self, files: dict[str, str], into: str) -> None:
        # Kept until submit() puts them in the Job's Secret; keys are flat (Secret keys have no '/').
        for rel, local in files.items():
            self._staged[rel] = Path(local).read_bytes()

    # -- the run -----------------------------------------------------------------------------
    def submit(self, run: "FanoutRun", tasks: list[int]) -> Submission:
        seq = len(run.submissions)
        name = _name(run.run_id, seq)
        ns = self.backend.namespace
        s = self.backend.settings
        files = {_key(k): v for k, v in self._staged.items()}
        if run.algorithm.startswith(RUN_MOUNT + "/") and _key(run.algorithm[len(RUN_MOUNT) + 1:]) not in files:
            files[_key(run.algorithm[len(RUN_MOUNT) + 1:])] = Path(run.algorithm_source).expanduser().read_bytes()
        listing = [(t, _key(run.inputs[t][len(RUN_MOUNT) + 1:]) if run.inputs[t].startswith(RUN_MOUNT + "/")
                    else run.inputs[t]) for t in tasks]
        files["list.tsv"] = list_file_text(listing).encode()
        payload = render_payload(name=name, run_id=run.run_id, namespace=ns, files=files)
        spec = run.spec or {}
        job = render_job(name=name, run_id=run.run_id, namespace=ns, image=spec.get("image") or s.get("image") or "python:3",
                         python=s.get("python", "python"), algorithm=_key(run.algorithm[len(RUN_MOUNT) + 1:]),
                         list_key="list.tsv", count=len(tasks), parallel=run.parallel, cpus=spec.get("cpus"),
                         memory_mb=spec.get("memory"), node_selector=s.get("node_selector"),
                         tolerations=s.get("tolerations"), run_as_user=s.get("run_as_user", 1000),
                         run_as_group=s.get("run_as_group", 100), claim=self._claim())
        self._call("CoreV1Api", "create_namespaced_secret", ns, payload)
        try:
            self._call("BatchV1Api", "create_namespaced_job", ns, job)
        except BaseException:
            self._call("CoreV1Api", "delete_namespaced_secret", name, ns, missing_ok=True)
            raise
        self._staged.clear()
        return Submission(tasks=list(tasks), job_ids=[name])

    def _pods(self, run: "FanoutRun") -> dict[int, dict[str, Any]]:
        """task -> the newest pod that ran it (in the latest submission that ran it)."""
        ns = self.backend.namespace
        pods = self._call("CoreV1Api", "list_namespaced_pod", ns, label_selector=f"{LABEL_RUN}={run.run_id}")["items"]
        by_job: dict[str, list[dict[str, Any]]] = {}
        for p in pods:
            job = (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") or \
                  (p["metadata"].get("labels") or {}).get("job-name", "")
            by_job.setdefault(job, []).append(p)
        out: dict[int, dict[str, Any]] = {}
        for sub in run.submissions:
            for p in sorted(by_job.get(sub.job_ids[0], []), key=lambda p: p["metadata"].get("creationTimestamp", "")):
                idx = (p["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION)
                if idx is not None and idx.isdigit() and int(idx) < len(sub.tasks):
                    out[sub.tasks[int(idx)]] = p
        return out

    def poll(self, run: "FanoutRun") -> dict[int, TaskStatus]:
        pods = self._pods(run)
        latest = {t: s for s in run.submissions for t in s.tasks}
        result: dict[int, TaskStatus] = {}
        for task in latest:
            p = pods.get(task)
            if p is None:
                result[task] = TaskStatus(task, PENDING, None, "no pod yet")
                continue
            phase = (p.get("status") or {}).get("phase", "Pending")
            if phase == "Succeeded":
                result[task] = TaskStatus(task, DONE, 0)
            elif phase == "Failed":
                term = _terminated(p)
                rc = term.get("exitCode")
                tail = self._stderr_tail(run, task, p)
                result[task] = TaskStatus(task, FAILED, rc, f"exit code {rc}" if rc is not None else
                                          (p.get("status") or {}).get("reason", "pod failed"), tail)
            elif phase == "Running":
                result[task] = TaskStatus(task, RUNNING)
            else:
                waiting = _waiting(p)
                result[task] = TaskStatus(task, PENDING, None, waiting)
        return result

    def _log(self, pod: dict[str, Any]) -> str:
        return self._call("CoreV1Api", "read_namespaced_pod_log", pod["metadata"]["name"], self.backend.namespace)

    def _stderr_tail(self, run: "FanoutRun", task: int, pod: dict[str, Any]) -> str:
        data = outputs_from_log(self._log(pod))
        if data is None:
            return ""
        import tarfile

        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                f = tar.extractfile(f"./{task_dir_name(task)}/stderr.log")
                return f.read()[-800:].decode(errors="replace") if f else ""
        except (KeyError, tarfile.TarError):
            return ""

    def fetch(self, run: "FanoutRun", tasks: list[int]) -> None:
        pods = self._pods(run)
        for t in tasks:
            p = pods.get(t)
            data = outputs_from_log(self._log(p)) if p is not None else None
            if data is not None:
                extract_tar(data, Path(run.output))

    def cancel(self, run: "FanoutRun") -> None:
        ns = self.backend.namespace
        for s in run.submissions:
            for name in s.job_ids:
                self._call("BatchV1Api", "delete_namespaced_job", name, ns, missing_ok=True,
                           propagation_policy="Background")

    def close(self) -> None:
        self.backend.close()


def _key(rel: str) -> str:
    """A Secret key for a staged path (``inputs/00003-x.h5`` -> ``inputs.00003-x.h5``)."""
    key = rel.replace("/", ".")
    if not re.match(r"^[-._a-zA-Z0-9]+$", key):
        key = re.sub(r"[^-._a-zA-Z0-9]", "_", key)
    return key


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return term
    return {}


def _waiting(pod: dict[str, Any]) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        w = (cs.get("state") or {}).get("waiting")
        if w:
            return w.get("reason", "waiting")
    return "pending"


__all__ = ["KubernetesEngine", "render_job", "render_payload", "outputs_from_log"]
