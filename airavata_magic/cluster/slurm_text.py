"""Parsers for what Slurm prints (pure functions, unit-tested).

- ``sinfo -h -a -o '%R|%a|%D|%T|%C|%G'``: per partition and node state: availability, node count,
  CPUs as allocated/idle/other/total, generic resources per node (``gpu:4``, ``gpu:a100:2(S:0)``).
- ``sacct -X -n -P -o JobID,JobName,Account,Partition,State,ElapsedRaw,NCPUS,AllocTRES``: one
  line per job allocation; GPUs from ``gres/gpu=N`` (or ``gres/gpu:type=N``) in AllocTRES.
"""
from __future__ import annotations

import re
from typing import Any

SINFO_FORMAT = "%R|%a|%D|%T|%C|%G"
SACCT_FIELDS = "JobID,JobName,Account,Partition,State,ElapsedRaw,NCPUS,AllocTRES"


def gpus_in_gres(gres: str) -> int:
    """GPUs per node in a sinfo ``%G`` value: ``gpu:4`` -> 4, ``gpu:a100:2(S:0-1),shard:8`` -> 2."""
    total = 0
    for item in re.split(r",(?![^()]*\))", gres or ""):
        m = re.match(r"^gpu(?::[^:(]+)?:(\d+)", item.strip())
        if m:
            total += int(m.group(1))
    return total


def parse_sinfo(text: str) -> list[dict[str, Any]]:
    """One dict per partition: partition, available, states ("idle:1, mixed:2"), nodes, cpus,
    cpus_idle, gpus (total over its nodes)."""
    parts: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        f = line.strip().split("|")
        if len(f) < 6:
            continue
        name, avail, nodes, state, cpus, gres = f[:6]
        p = parts.setdefault(name, {"partition": name, "available": avail, "states": {}, "nodes": 0,
                                    "cpus": 0, "cpus_idle": 0, "gpus": 0})
        n = int(nodes) if nodes.isdigit() else 0
        p["nodes"] += n
        p["states"][state] = p["states"].get(state, 0) + n
        a_i_o_t = cpus.split("/")
        if len(a_i_o_t) == 4 and all(x.isdigit() for x in a_i_o_t):
            p["cpus"] += int(a_i_o_t[3])
            p["cpus_idle"] += int(a_i_o_t[1])
        p["gpus"] += gpus_in_gres(gres) * n
    for p in parts.values():
        p["states"] = ", ".join(f"{s}:{n}" for s, n in sorted(p["states"].items()))
    return list(parts.values())


def gpus_in_tres(tres: str) -> int:
    """GPUs in an AllocTRES value: ``cpu=1,gres/gpu=2,mem=1G`` -> 2 (typed entries counted once)."""
    plain = re.search(r"(?:^|,)gres/gpu=(\d+)", tres or "")
    if plain:
        return int(plain.group(1))
    return sum(int(n) for n in re.findall(r"(?:^|,)gres/gpu:[^=,]+=(\d+)", tres or ""))


def parse_sacct(text: str) -> list[dict[str, Any]]:
    """One dict per job: job_id, name, account, partition, state (first word), elapsed_s, cpus, gpus."""
    jobs = []
    for line in text.splitlines():
        f = line.rstrip("\n").split("|")
        if len(f) < 8 or not f[0]:
            continue
        job_id, name, account, partition, state, elapsed, ncpus, tres = f[:8]
        jobs.append({
            "job_id": job_id, "name": name, "account": account, "partition": partition,
            "state": (state.split() or [""])[0].rstrip("+"),
            "elapsed_s": int(elapsed) if elapsed.isdigit() else 0,
            "cpus": int(ncpus) if ncpus.isdigit() else 0, "gpus": gpus_in_tres(tres),
        })
    return jobs


_SINCE = re.compile(r"^(\d{1,4})([hdw])$")


def since_arg(since: str) -> tuple[str, float]:
    """``7d`` / ``12h`` / ``2w`` -> (sacct ``--starttime`` value relative to the cluster's clock, seconds)."""
    m = _SINCE.match(str(since).strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"invalid --since {since!r}: use a number and h, d or w, e.g. 12h, 7d, 2w")
    n, unit = int(m.group(1)), m.group(2)
    word = {"h": "hours", "d": "days", "w": "weeks"}[unit]
    return f"now-{n}{word}", n * {"h": 3600, "d": 86400, "w": 604800}[unit]
