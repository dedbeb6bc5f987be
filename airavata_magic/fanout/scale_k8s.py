"""Scale runs on Kubernetes: per world size, one Indexed Job (``completions = parallelism = W``,
``backoffLimit: 0``) and a headless Service, so rank ``i`` is pod ``<job>-<i>`` and rank 0 is
reachable as ``<job>-0.<service>``: the rendezvous comes from the cluster's own DNS.

``RANK`` is the pod's ``JOB_COMPLETION_INDEX``. The script and ``airavata_rank_results.py`` travel
in a Secret mounted at ``/airavata/run`` (on ``PYTHONPATH``); each rank prints its results
directory as a base64 tar at the end of its log, read back through the API. One failed rank fails
the Job, and the Job controller terminates the ranks still running (none waits at the rendezvous).
"""
from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import RuntimeFailed
from .engine import extract_tar
from .kubernetes import BEGIN, END, LABEL_RUN, OUT_MOUNT, RUN_MOUNT, outputs_from_log, render_payload

RANK_SCRIPT = f"""export RANK="$JOB_COMPLETION_INDEX" LOCAL_RANK=0
export AIRAVATA_RESULTS_DIR="$1/rank-$RANK"
mkdir -p "$AIRAVATA_RESULTS_DIR"
"$2" "$3" > "$AIRAVATA_RESULTS_DIR/stdout.log" 2> "$AIRAVATA_RESULTS_DIR/stderr.log"
rc=$?
echo "$rc" > "$AIRAVATA_RESULTS_DIR/exit"
echo "{BEGIN}"
tar -C "$1" -cf - . | base64
echo "{END}"
exit "$rc"
"""


def render_scale(*, name: str, run_id: str, namespace: str, world: int, image: str, python: str, port: int,
                 threads: int, gpus: int = 0, gpu_resource: str = "nvidia.com/gpu", run_as_user: int = 1000,
                 run_as_group: int = 100) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headless Service, Indexed Job) of one world size (pure; schema-validated in tests)."""
    labels = {"app.kubernetes.io/managed-by": "airavata-magic", LABEL_RUN: run_id, "airavata-magic/scale": name}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels},
               "spec": {"clusterIP": "None", "selector": labels, "publishNotReadyAddresses": True,
                        "ports": [{"name": "rendezvous", "port": port, "targetPort": port}]}}
    env = [{"name": "WORLD_SIZE", "value": str(world)}, {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"},
           {"name": "MASTER_PORT", "value": str(port)}, {"name": "OMP_NUM_THREADS", "value": str(threads)},
           {"name": "AIRAVATA_THREADS_PER_RANK", "value": str(threads)},
           {"name": "AIRAVATA_GPUS_PER_RANK", "value": str(gpus)}, {"name": "PYTHONPATH", "value": RUN_MOUNT}]
    limits: dict[str, str] = {"cpu": str(threads)}
    if gpus:
        limits[gpu_resource] = str(gpus)
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": namespace, "labels": labels},
           "spec": {"completionMode": "Indexed", "completions": world, "parallelism": world, "backoffLimit": 0,
                    "ttlSecondsAfterFinished": 3600,
                    "template": {"metadata": {"labels": labels}, "spec": {
                        "subdomain": name, "restartPolicy": "Never",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": run_as_user, "runAsGroup": run_as_group},
                        "containers": [{"name": "rank", "image": image,
                                        "command": ["sh", "-c", RANK_SCRIPT, "airavata-rank", OUT_MOUNT, python,
                                                    f"{RUN_MOUNT}/script.py"],
                                        "env": env, "ports": [{"containerPort": port, "name": "rendezvous"}],
                                        "resources": {"requests": dict(limits), "limits": limits},
                                        "volumeMounts": [{"name": "run", "mountPath": RUN_MOUNT, "readOnly": True},
                                                         {"name": "out", "mountPath": OUT_MOUNT}],
                                        "securityContext": {"allowPrivilegeEscalation": False,
                                                            "capabilities": {"drop": ["ALL"]}}}],
                        "volumes": [{"name": "run", "secret": {"secretName": name, "defaultMode": 0o440}},
                                    {"name": "out", "emptyDir": {}}]}}}}
    return service, job


def run_k8s(res: Any, spec: dict[str, Any], script: Path, sizes: list[int], gpus: int, threads: int, out: Path,
            run_id: str, timeout: float, say: Callable[[str], None]) -> None:
    """Each world size in turn: Secret + Service + Indexed Job, wait, results from the logs, clean up."""
    from ..backends.kubernetes import KubernetesBackend
    from .scale import _failure, _helper_source

    be = KubernetesBackend(res, lambda name: None)
    s = be.settings
    ns = be.namespace
    try:
        for w in sizes:
            name = f"{run_id}-w{w}".lower()
            port = 20000 + secrets.randbelow(40000)
            service, job = render_scale(name=name, run_id=run_id, namespace=ns, world=w,
                                        image=spec.get("image") or s.get("image") or "python:3",
                                        python=s.get("python", "python"), port=port, threads=threads, gpus=gpus,
                                        gpu_resource=s.get("gpu_resource", "nvidia.com/gpu"),
                                        run_as_user=s.get("run_as_user", 1000), run_as_group=s.get("run_as_group", 100))
            payload = render_payload(name=name, run_id=run_id, namespace=ns,
                                     files={"script.py": script.read_bytes(), "airavata_rank_results.py": _helper_source()})
            be._call("CoreV1Api", "create_namespaced_secret", ns, payload)
            be._call("CoreV1Api", "create_namespaced_service", ns, service)
            be._call("BatchV1Api", "create_namespaced_job", ns, job)
            say(f"world size {w}: Indexed Job {name} with {w} rank(s)")
            try:
                state = _wait_job(be, ns, name, timeout)
                pods = be._call("CoreV1Api", "list_namespaced_pod", ns, label_selector=f"job-name={name}")["items"]
                for p in pods:
                    log = be._call("CoreV1Api", "read_namespaced_pod_log", p["metadata"]["name"], ns)
                    data = outputs_from_log(log)
                    if data is not None:
                        extract_tar(data, out / f"w{w}")
                if state != "Complete":
                    raise _failure(out, w, f"Job {name} {state.lower()}")
            finally:
                be._call("BatchV1Api", "delete_namespaced_job", name, ns, missing_ok=True, propagation_policy="Background")
                be._call("CoreV1Api", "delete_namespaced_service", name, ns, missing_ok=True)
                be._call("CoreV1Api", "delete_namespaced_secret", name, ns, missing_ok=True)
    finally:
        be.close()


def _wait_job(be: Any, ns: str, name: str, timeout: float) -> str:
    """Poll the Job until its Complete or Failed condition; returns which."""
    deadline = time.monotonic() + timeout
    interval = 0.2
    while True:
        job = be._call("BatchV1Api", "read_namespaced_job", name, ns)
        for c in (job.get("status") or {}).get("conditions") or []:
            if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
                return c["type"]
        if time.monotonic() > deadline:
            raise RuntimeFailed(f"scale Job {name} not finished after {timeout:.0f} s")
        time.sleep(interval)
        interval = min(interval * 1.3, 2.0)
