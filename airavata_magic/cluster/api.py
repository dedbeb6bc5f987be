"""Compute: the resources a user has (``resources()``) and what they used (``usage()``).

Each resource is asked with one command over its pooled SSH connection: ``sinfo`` on Slurm, the
host's CPUs, memory and GPUs on a plain SSH host or here; Kubernetes nodes' allocatable CPU,
memory and GPUs when this user may list nodes, else "not visible". Usage comes from ``sacct``.
"""
from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

from .. import profile as profiles
from ..errors import AiravataError, InvalidArgument
from ..applications.shell import kind_phrase
from .slurm_text import SACCT_FIELDS, SINFO_FORMAT, parse_sacct, parse_sinfo, since_arg

if TYPE_CHECKING:
    import pandas as pd

    from ..profile import Resource

RESOURCE_COLUMNS = ["resource", "kind", "host", "partition", "state", "nodes", "cpus", "cpus_idle", "gpus", "memory_mb", "note"]
USAGE_COLUMNS = ["resource", "account", "partition", "jobs", "by_state", "cpu_hours", "gpu_hours", "airavata_jobs"]

_HOST_FACTS = ("nproc; awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo; "
               "ls /dev 2>/dev/null | grep -cE '^nvidia[0-9]+$' || true")


def _row(res: "Resource", **kw: Any) -> dict[str, Any]:
    row = {c: None for c in RESOURCE_COLUMNS}
    row.update(resource=res.name, kind=res.kind, host=res.settings.get("host") or "localhost", note="")
    row.update(kw)
    return row


def _host_facts(text: str) -> dict[str, Any]:
    nums = [int(x) for x in text.split() if x.isdigit()]
    cpus, mem, gpus = (nums + [None, None, None])[:3]
    return {"nodes": 1, "cpus": cpus, "memory_mb": mem, "gpus": gpus, "state": "up"}


def _ask(res: "Resource") -> list[dict[str, Any]]:
    from ..applications.shell import run_script

    if res.kind == "slurm":
        rc, out, err = run_script(res, f"sinfo -h -a -o {shlex.quote(SINFO_FORMAT)}", login=False)
        if rc != 0:
            return [_row(res, note=f"sinfo failed: {(err or out).strip().splitlines()[-1:] or rc}")]
        return [_row(res, partition=p["partition"], state=f"{p['available']} ({p['states']})", nodes=p["nodes"],
                     cpus=p["cpus"], cpus_idle=p["cpus_idle"], gpus=p["gpus"]) for p in parse_sinfo(out)]
    if res.kind in ("ssh", "local"):
        rc, out, err = run_script(res, _HOST_FACTS, login=False)
        return [_row(res, **_host_facts(out))] if rc == 0 else [_row(res, note=f"cannot read the host's facts: {err.strip()[-200:]}")]
    if res.kind == "kubernetes":
        return _kubernetes(res)
    return [_row(res, note=f"unknown kind {res.kind}")]


def _kubernetes(res: "Resource") -> list[dict[str, Any]]:
    from ..backends import backend_class

    backend = backend_class("kubernetes")(res, lambda name: None)
    gpu_key = res.settings.get("gpu_resource", "nvidia.com/gpu")
    host = res.settings.get("context") or "in-cluster"
    try:
        nodes = backend._call("CoreV1Api", "list_node").get("items", [])  # noqa: SLF001 - the backend's one API path
    except AiravataError as e:
        if "(HTTP 403)" in str(e):  # nodes are cluster-scoped: most users of a shared cluster may not list them
            return [_row(res, host=host, note="not visible: this user may not list nodes (a cluster-wide "
                                              "permission); pods are still scheduled by the cluster")]
        return [_row(res, host=host, note=f"not visible: {e}")]
    finally:
        backend.close()
    rows = []
    for n in nodes:
        alloc = (n.get("status") or {}).get("allocatable") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in (n.get("status") or {}).get("conditions") or [])
        state = ("ready" if ready else "not ready") + (", cordoned" if (n.get("spec") or {}).get("unschedulable") else "")
        taints = [f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}"
                  for t in (n.get("spec") or {}).get("taints") or [] if t.get("key") and t.get("effect")]
        rows.append(_row(res, host=host, partition=n["metadata"]["name"], state=state, nodes=1,
                         cpus=_cpu(alloc.get("cpu")), gpus=int(alloc.get(gpu_key, 0) or 0),
                         memory_mb=_mem_mb(alloc.get("memory")),
                         note=f"taints (pods need tolerations): {', '.join(taints)}" if taints else ""))
    return rows


def _cpu(v: Any) -> float | None:
    s = str(v or "")
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s) if s else None


def _mem_mb(v: Any) -> int | None:
    s = str(v or "")
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 ** 2, "k": 1 / 1048.576, "M": 1 / 1.048576, "G": 953.67}
    for u, f in units.items():
        if s.endswith(u):
            return int(float(s[: -len(u)]) * f)
    return int(int(s) / 1048576) if s.isdigit() else None


def resources(resource: str | None = None, *, file: str | None = None) -> "pd.DataFrame":
    """The profile's resources (or one): kind, host, and per Slurm partition its state, nodes,
    CPUs (total and idle) and GPUs, from one ``sinfo`` per resource; per Kubernetes node (one
    node list per resource) its readiness, allocatable CPUs, memory and GPUs and its taints, or
    one row noting "not visible" where this user may not list nodes."""
    import concurrent.futures

    import pandas as pd

    prof = profiles.load_profile(file)
    chosen = [prof.resource(resource)] if resource else list(prof.resources.values())
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(chosen))) as pool:
        answers = list(pool.map(_safe_ask, chosen))
    return pd.DataFrame([row for rows in answers for row in rows], columns=RESOURCE_COLUMNS)


def _safe_ask(res: "Resource") -> list[dict[str, Any]]:
    try:
        return _ask(res)
    except AiravataError as e:  # one unreachable resource must not hide the others
        return [_row(res, note=str(e))]


def _our_jobs(resource: str) -> set[str]:
    """Job ids of the runtimes this package started on ``resource`` (from the runtime records)."""
    from ..runtime import RuntimeStore

    return {str(rt.job_id) for rt in RuntimeStore().all() if rt.resource == resource and rt.job_id}


def usage(resource: str | None = None, since: str = "7d", *, jobs: bool = False, file: str | None = None) -> "pd.DataFrame":
    """This user's consumption from Slurm accounting (``sacct``) since ``since`` (``12h``, ``7d``,
    ``2w``): per resource, account and partition, jobs, jobs by state, CPU-hours and GPU-hours, and
    how many of those jobs were runtimes started here. ``jobs=True`` gives one row per job instead.
    A resource without accounting raises one line saying so (when named; else it is skipped and
    listed in ``df.attrs["skipped"]``)."""
    import pandas as pd

    try:
        start, _ = since_arg(since)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None
    prof = profiles.load_profile(file)
    if resource:
        res = prof.resource(resource)
        if res.kind != "slurm":
            raise InvalidArgument(f"{resource} is {kind_phrase(res.kind)} resource: usage comes from Slurm accounting (sacct), "
                                  "which only slurm resources have")
        chosen = [res]
    else:
        chosen = [r for r in prof.resources.values() if r.kind == "slurm"]
        if not chosen:
            raise InvalidArgument(f"no slurm resource in {prof.path or 'the profile (no file found)'}: usage comes from sacct")
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for res in chosen:
        try:
            found = _sacct(res, start)
        except AiravataError as e:
            if resource:
                raise
            skipped.append(str(e))
            continue
        ours = _our_jobs(res.name)
        for j in found:
            j.update(resource=res.name, airavata=j["job_id"].split(".")[0] in ours,
                     cpu_hours=j["elapsed_s"] * j["cpus"] / 3600, gpu_hours=j["elapsed_s"] * j["gpus"] / 3600)
        rows += found
    df = pd.DataFrame(rows, columns=["resource", "job_id", "name", "account", "partition", "state", "elapsed_s",
                                     "cpus", "gpus", "cpu_hours", "gpu_hours", "airavata"])
    if not jobs:
        df = _summary(df)
    df.attrs["skipped"] = skipped
    return df


def _summary(df: "pd.DataFrame") -> "pd.DataFrame":
    import pandas as pd

    out = []
    for (res, account, partition), g in df.groupby(["resource", "account", "partition"], sort=True, dropna=False):
        states = g["state"].value_counts()
        out.append({"resource": res, "account": account, "partition": partition, "jobs": len(g),
                    "by_state": ", ".join(f"{s}:{n}" for s, n in sorted(states.items())),
                    "cpu_hours": round(float(g["cpu_hours"].sum()), 4), "gpu_hours": round(float(g["gpu_hours"].sum()), 4),
                    "airavata_jobs": int(g["airavata"].sum())})
    return pd.DataFrame(out, columns=USAGE_COLUMNS)


def _sacct(res: "Resource", start: str) -> list[dict[str, Any]]:
    from ..applications.shell import run_script

    user = res.settings.get("user") or os.environ.get("USER", "")
    who = shlex.quote(user) if user else '"$USER"'
    script = f"sacct -X -n -P -u {who} -S {shlex.quote(start)} -E now -o {shlex.quote(SACCT_FIELDS)}"
    rc, out, err = run_script(res, script, login=False)
    if rc != 0:
        why = " ".join((err or out).strip().splitlines()[-1:]) or f"exit code {rc}"
        raise AiravataError(f"{res.name} has no usable Slurm accounting ({why}); ask the site for sacct / slurmdbd")
    return parse_sacct(out)
