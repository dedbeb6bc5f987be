"""``observation_from_pod``: pod status and events -> runtime state, for cases the simulator does
not produce on its own (the cluster autoscaler, a config error, a pod that is just waiting)."""
from __future__ import annotations

from airavata_magic.backends.kubernetes.status import format_events, observation_from_pod
from airavata_magic.runtime import RuntimeState


def ev(reason: str, message: str, when: str, type_: str = "Normal", count: int = 1) -> dict:
    return {"reason": reason, "message": message, "type": type_, "lastTimestamp": when, "count": count,
            "involvedObject": {"kind": "Pod", "name": "p"}, "metadata": {"name": "p.1"}}


def pending(conditions=None, node=None, waiting=None) -> dict:
    status = {"phase": "Pending", "conditions": conditions or []}
    if waiting:
        status["containerStatuses"] = [{"name": "kernel", "restartCount": 0, "state": {"waiting": waiting}}]
    return {"metadata": {"name": "p", "uid": "u"}, "spec": {"nodeName": node} if node else {}, "status": status}


UNSCHEDULABLE = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]


def test_unschedulable_waits_while_the_autoscaler_adds_a_node():
    failed = ev("FailedScheduling", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", "2026-01-01T10:00:00Z", "Warning")
    scale = ev("TriggeredScaleUp", "pod triggered scale-up: [{gpu-pool 0->1 (max: 4)}]", "2026-01-01T10:00:01Z")
    ob = observation_from_pod(pending(UNSCHEDULABLE), [failed, scale], was_ready=False)
    assert ob.state == RuntimeState.QUEUED and "scale-up" in ob.reason
    # ... but not when the scheduler failed again after the scale-up (e.g. max size reached)
    again = ev("FailedScheduling", "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.", "2026-01-01T10:05:00Z", "Warning")
    ob = observation_from_pod(pending(UNSCHEDULABLE), [failed, scale, again], was_ready=False)
    assert ob.state == RuntimeState.FAILED and ob.reason == "Unschedulable: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu."


def test_waiting_pods_show_phase_and_latest_event():
    ob = observation_from_pod(pending(), [], was_ready=False)
    assert ob.state == RuntimeState.QUEUED and ob.reason == "Pending: waiting for a node"
    events = [ev("Scheduled", "Successfully assigned research/p to n1", "2026-01-01T10:00:00Z"),
              ev("Pulling", 'Pulling image "big:1"', "2026-01-01T10:00:00Z")]
    ob = observation_from_pod(pending(node="n1", waiting={"reason": "ContainerCreating"}), events, was_ready=False)
    assert ob.state == RuntimeState.STARTING and ob.reason == 'Pending: Pulling: Pulling image "big:1"'
    assert ob.log_tail.splitlines()[-1].endswith('Normal Pulling: Pulling image "big:1"')


def test_config_errors_fail_at_once():
    waiting = {"reason": "CreateContainerConfigError", "message": "container has runAsNonRoot and image will run as root"}
    ob = observation_from_pod(pending(node="n1", waiting=waiting), [], was_ready=False)
    assert ob.state == RuntimeState.FAILED and ob.reason == "CreateContainerConfigError: " + waiting["message"]


def test_gone_and_deleting_pods():
    assert observation_from_pod(None, [], was_ready=True, pod_label="p").state == RuntimeState.DEAD
    assert observation_from_pod(None, [], was_ready=False, pod_label="p").state == RuntimeState.FAILED
    pod = pending(node="n1")
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T10:00:00Z"
    ob = observation_from_pod(pod, [ev("Killing", "Stopping container kernel", "2026-01-01T10:00:00Z")], was_ready=True)
    assert ob.state == RuntimeState.DEAD and "being deleted outside airavata-magic (Stopping container kernel)" in ob.reason


def test_deadline_is_expired_and_end_time_comes_from_the_start():
    pod = {"metadata": {"name": "p"}, "spec": {"activeDeadlineSeconds": 600, "nodeName": "n1"},
           "status": {"phase": "Running", "startTime": "2026-01-01T10:00:00Z",
                      "containerStatuses": [{"name": "kernel", "restartCount": 0, "state": {"running": {}}}]}}
    ob = observation_from_pod(pod, [], was_ready=True)
    assert ob.state == RuntimeState.STARTING and ob.node == "n1"
    from datetime import datetime, timezone

    assert ob.ends_at == datetime(2026, 1, 1, 10, 10, tzinfo=timezone.utc).timestamp()
    pod["status"].update(phase="Failed", reason="DeadlineExceeded", message="Pod was active on the node longer than the specified deadline")
    assert observation_from_pod(pod, [], was_ready=True).state == RuntimeState.EXPIRED


def test_repeated_events_show_their_count():
    text = format_events([ev("BackOff", "Back-off pulling image", "2026-01-01T10:00:00Z", "Normal", 5)])
    assert text.endswith("Normal BackOff: Back-off pulling image (x5)")
