"""A pod and its events mapped to a runtime state: pure functions, no API calls.

Failures that will not fix themselves (Unschedulable, image pull errors, CrashLoopBackOff,
OOMKilled, deletion from outside, the deadline) map to a terminal state at once, with the reason
Kubernetes gave, so a wait ends instead of timing out.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Iterable

from ...runtime import Observation, RuntimeState
from .manifests import CONTAINER

# Container waiting reasons that never fix themselves without the user changing something.
FATAL_WAITING = {
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
}


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


def _kernel_status(pod: dict[str, Any]) -> dict[str, Any]:
    cs = (pod.get("status") or {}).get("containerStatuses") or []
    return next((c for c in cs if c.get("name") == CONTAINER), {})


def restarts(pod: dict[str, Any]) -> int:
    """How often the kubelet has restarted the kernel container."""
    return int(_kernel_status(pod).get("restartCount") or 0)


def running(pod: dict[str, Any]) -> bool:
    """Is the kernel container running now?"""
    return bool((_kernel_status(pod).get("state") or {}).get("running"))


def phase(pod: dict[str, Any]) -> str:
    """The pod's phase (Pending until the API says otherwise)."""
    return (pod.get("status") or {}).get("phase", "Pending")


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
    phase_ = status.get("phase", "Pending")
    started = _ts(status.get("startTime"))
    deadline = spec.get("activeDeadlineSeconds")
    ends_at = started + deadline if started and deadline else None

    def obs(state: RuntimeState, reason: str) -> Observation:
        return Observation(state, reason, node=node, log_tail=log, ends_at=ends_at)

    if meta.get("deletionTimestamp"):
        killing = _latest(events, "Killing")
        return obs(lost, f"pod {name} is being deleted outside airavata-magic" + (f" ({killing['message']})" if killing else ""))
    if phase_ == "Failed" and status.get("reason") == "DeadlineExceeded":
        return obs(RuntimeState.EXPIRED, f"walltime reached: {status.get('message') or 'pod deadline exceeded'}")
    cs = _kernel_status(pod)
    state, last = cs.get("state") or {}, cs.get("lastState") or {}
    if phase_ in ("Failed", "Succeeded"):
        term = state.get("terminated") or last.get("terminated") or {}
        why = status.get("message") or status.get("reason") or _termination(term) or f"pod {phase_}"
        return obs(lost, f"pod {name} {phase_.lower()}: {why}")
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in FATAL_WAITING:
        term = _termination(last.get("terminated") or {})
        msg = waiting.get("message") or _latest_warning_message(events) or ""
        detail = f"{waiting['reason']}: {msg}".rstrip(": ")
        if waiting["reason"] == "CrashLoopBackOff" and term:
            detail += f" (last exit: {term})"
        return obs(lost, detail)
    if int(cs.get("restartCount") or 0) > expected_restarts and last.get("terminated"):
        return obs(lost, f"the kernel container restarted: {_termination(last['terminated'])}")
    if state.get("terminated"):
        return obs(lost, f"the kernel container exited: {_termination(state['terminated'])}")
    if phase_ == "Pending":
        return _pending(status, events, node, obs)
    if phase_ == "Running":
        return obs(RuntimeState.STARTING, "Running")
    return obs(RuntimeState.QUEUED, f"{phase_}")


def _pending(status: dict[str, Any], events: list[dict[str, Any]], node: str | None, obs: Any) -> Observation:
    """A Pending pod: unschedulable (FAILED, or QUEUED while the autoscaler adds a node),
    waiting for a node (QUEUED), or pulling and starting on one (STARTING)."""
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
