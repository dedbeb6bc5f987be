"""The kubernetes backend against the Kubernetes API simulator (``[sim]``; not a cluster) and,
when ``$AIRAVATA_TEST_KUBECONFIG`` is set, a real cluster (``[real]``, marked k8s_real).

Every scenario goes through the official client over HTTPS, a real ipykernel in the pod, and the
WebSocket port-forward, as against a cluster.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import stat
import time
from typing import Any, Iterator

import pytest
from jupyter_client import BlockingKernelClient

from airavata_magic.backends.kubernetes import KERNEL_PORTS, pod_name
from airavata_magic.errors import BackendError
from airavata_magic.runtime import Runtime, RuntimeState

from .conftest import BROKEN_IMAGE, Cluster, runtime, started, submit, wait_for


@contextlib.contextmanager
def kernel(info: dict[str, Any]) -> Iterator[BlockingKernelClient]:
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    # no heartbeat channel: jupyter_client's gives up for good on a ping lost while the kernel
    # is still binding its ports (the forward is open before the kernel listens); the relay
    # retries kernel_info instead
    kc.start_channels(hb=False)
    try:
        kc.wait_for_ready(timeout=60)
        yield kc
    finally:
        kc.stop_channels()


def run(kc: BlockingKernelClient, code: str, timeout: float = 30) -> str:
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def the_pod(cluster: Cluster, backend, rt: Runtime) -> dict[str, Any]:
    (pod,) = [p for p in cluster.pods(backend) if p["metadata"]["name"] == rt.job_id]
    return pod


# -- runtimes that work ---------------------------------------------------------------------------
def test_cpu_runtime_runs_a_cell_through_the_port_forward(cluster, make_backend):
    b = make_backend(cluster)
    rt = runtime("cpu", cpus=1, memory=512, walltime=30)
    submit(b, rt)
    assert rt.state == RuntimeState.QUEUED and rt.job_id == pod_name("cpu", b.owner)
    ob = started(b, rt)
    pod = the_pod(cluster, b, rt)
    res = pod["spec"]["containers"][0]["resources"]
    assert res["requests"] == res["limits"] == {"cpu": "1", "memory": "512Mi"}
    # the walltime is the pod's deadline, and the end time is reported from its start
    assert pod["spec"]["activeDeadlineSeconds"] == 1800
    started_at = pod["status"]["startTime"]
    assert ob.ends_at is not None and abs(ob.ends_at - (_epoch(started_at) + 1800)) < 1
    info = b.connection(rt)
    assert info["ip"] == "127.0.0.1" and set(KERNEL_PORTS) <= set(info)
    with kernel(info) as kc:
        assert run(kc, "print(6 * 7)") == "42\n"
        # the kernel listens on its pod's loopback only, on the fixed ports of the Secret
        if cluster.sim is not None:
            assert run(kc, "import json,sys; print(json.load(open(sys.argv[-1]))['ip'])").strip() == "127.0.0.1"
    # the key travels in the Secret only: not in the pod spec, its env, nor the runtime record
    key = info["key"]
    assert key not in json.dumps(pod) and key not in json.dumps(rt.to_json())
    (secret,) = [s for s in cluster.secrets(b) if s["metadata"]["name"] == rt.job_id]
    assert json.loads(base64.b64decode(secret["data"]["connection.json"]))["key"] == key
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    if cluster.sim is not None:
        # the kernel read its connection file from the read-only Secret volume and left it as is
        mounted = cluster.sim.workdir / "pods" / pod["metadata"]["uid"] / "volumes" / "kernel-connection" / "connection.json"
        assert mounted.read_bytes() == base64.b64decode(secret["data"]["connection.json"])
        assert stat.S_IMODE(mounted.stat().st_mode) == 0o440
    conn_file = b.runtime_dir("cpu") / "connection.json"
    assert stat.S_IMODE(conn_file.stat().st_mode) == 0o600
    b.stop(rt)


def test_gpu_runtime_pod_limits_carry_the_gpus(cluster, make_backend):
    if cluster.sim is None and not os.environ.get("AIRAVATA_TEST_GPUS"):
        pytest.skip("k8s_real: set AIRAVATA_TEST_GPUS=1 when the cluster has nvidia.com/gpu nodes")
    b = make_backend(cluster, node_selector={"gpu": "a100"} if cluster.sim else {})
    rt = runtime("gpu", gpus=2, memory=1024)
    submit(b, rt)
    ob = started(b, rt)
    pod = the_pod(cluster, b, rt)
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"
    if cluster.sim is not None:
        assert ob.node == "sim-gpu-1"
    with kernel(b.connection(rt)) as kc:
        seen = run(kc, "import os; print(os.environ.get('NVIDIA_VISIBLE_DEVICES'))").strip()
    assert len(seen.split(",")) == 2 or seen == "all"
    b.stop(rt)


def test_gpu_resource_name_is_configurable(make_backend, sim_cluster):
    b = make_backend(sim_cluster, gpu_resource="amd.com/gpu")
    rt = runtime("amd", gpus=1)
    submit(b, rt)
    ob = wait_for(b, rt, lambda o: o.state.terminal)
    # no simulated node has amd.com/gpu: the scheduler says so about exactly that resource
    assert ob.state == RuntimeState.FAILED and "Insufficient amd.com/gpu" in ob.reason


# -- failures end the wait at once, with the event's message ---------------------------------------
def _fails_fast(b, rt: Runtime, within: float = 5.0):
    t0 = time.monotonic()
    ob = wait_for(b, rt, lambda o: o.state.terminal, timeout=60)
    return ob, time.monotonic() - t0


def test_insufficient_gpus_fail_at_once(cluster, make_backend):
    b = make_backend(cluster)
    rt = runtime("toomany", gpus=64)
    submit(b, rt)
    ob, took = _fails_fast(b, rt)
    assert ob.state == RuntimeState.FAILED and took < 10
    assert ob.reason.startswith("Unschedulable: ") and "Insufficient nvidia.com/gpu" in ob.reason
    assert "FailedScheduling" in ob.log_tail
    # observing only observes: the failed pod stays until the manager stops the runtime
    assert any(p["metadata"]["name"] == rt.job_id for p in cluster.pods(b))
    b.stop(rt)
    _gone(cluster, b, rt)


def test_no_matching_node_fails_at_once(cluster, make_backend):
    b = make_backend(cluster, node_selector={"airavata-test/no-such-label": "x"})
    rt = runtime("nowhere")
    submit(b, rt)
    ob, took = _fails_fast(b, rt)
    assert ob.state == RuntimeState.FAILED and took < 10
    assert "didn't match Pod's node affinity/selector" in ob.reason


def test_image_pull_failure_fails_at_once(cluster, make_backend):
    image = "registry.invalid/airavata/no-such-image:0"
    b = make_backend(cluster, image=image)
    rt = runtime("noimage")
    submit(b, rt)
    ob, took = _fails_fast(b, rt)
    assert ob.state == RuntimeState.FAILED and took < (10 if cluster.sim else 60)
    assert ob.reason.split(":")[0] in ("ErrImagePull", "ImagePullBackOff") and image in ob.reason + ob.log_tail
    assert "Failed" in ob.log_tail  # the events are shown
    b.stop(rt)  # what the manager does with a terminal runtime: its pod goes
    _gone(cluster, b, rt)


def test_kernel_that_cannot_start_fails_with_exit_code_and_log(sim_cluster, make_backend):
    cluster, sim = sim_cluster, sim_cluster.sim
    b = make_backend(cluster, image=BROKEN_IMAGE)
    rt = runtime("broken")
    submit(b, rt)
    ob, took = _fails_fast(b, rt)
    assert ob.state == RuntimeState.FAILED and took < 10
    assert "exit code 1" in ob.reason
    assert "No module named ipykernel_launcher" in ob.log_tail  # the container's log tail
    assert b.observe([rt])[rt.name].state == RuntimeState.FAILED and len(sim.pods()) == 1  # observed, untouched
    b.stop(rt)
    assert not sim.pods() and not sim.secrets()


def test_crash_loop_back_off_is_reported_as_such(sim_cluster, make_backend):
    cluster, sim = sim_cluster, sim_cluster.sim
    b = make_backend(cluster, image=BROKEN_IMAGE)
    rt = runtime("crashloop")
    submit(b, rt)
    # do not look until the kubelet itself has given up restarting right away
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        cs = (sim.pods()[0]["status"].get("containerStatuses") or [{}])[0]
        if (cs.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff":
            break
        time.sleep(0.05)
    ob = b.observe([rt])[rt.name]
    assert ob.state == RuntimeState.FAILED
    assert ob.reason.startswith("CrashLoopBackOff: back-off") and "(last exit: Error (exit code 1))" in ob.reason
    assert "BackOff" in ob.log_tail


def test_oom_killed_kernel_is_dead_with_the_reason(sim_cluster, make_backend):
    cluster, sim = sim_cluster, sim_cluster.sim
    b = make_backend(cluster)
    rt = runtime("oom", memory=256)
    submit(b, rt)
    started(b, rt)
    with kernel(b.connection(rt)) as kc:
        run(kc, "x = 1")
    rt.state, rt.ready_at = RuntimeState.READY, time.time()
    sim.oom_kill(rt.job_id)
    ob = wait_for(b, rt, lambda o: o.state.terminal, timeout=20)
    assert ob.state == RuntimeState.DEAD and "OOMKilled (exit code 137)" in ob.reason
    assert "--memory" in ob.reason


def test_pod_deleted_from_outside_ends_the_runtime(cluster, make_backend):
    b = make_backend(cluster)
    rt = runtime("deleted")
    submit(b, rt)
    started(b, rt)
    rt.state, rt.ready_at = RuntimeState.READY, time.time()
    cluster.delete_pod(b, rt.job_id)
    ob = wait_for(b, rt, lambda o: o.state.terminal, timeout=30)
    assert ob.state == RuntimeState.DEAD and "deleted outside airavata-magic" in ob.reason
    # the garbage collector follows the Secret's ownerReference
    deadline = time.monotonic() + 30
    while any(s["metadata"]["name"] == rt.job_id for s in cluster.secrets(b)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(s["metadata"]["name"] == rt.job_id for s in cluster.secrets(b))


def test_walltime_deadline_expires_the_runtime(tmp_path, make_backend):
    from .conftest import KERNEL_IMAGE
    from .simulator import Simulator
    import sys
    from pathlib import Path

    # a simulator whose clock runs 60x faster for deadlines: 1 minute of walltime is 1 s
    sim = Simulator(tmp_path / "fast", {KERNEL_IMAGE: str(Path(sys.executable).parent)}, time_scale=1 / 60).start()
    try:
        b = make_backend({"kubeconfig": str(sim.kubeconfig), "context": "sim", "image": KERNEL_IMAGE})
        rt = runtime("short", walltime=1)
        submit(b, rt)
        ob = wait_for(b, rt, lambda o: o.state.terminal, timeout=30)
        assert ob.state == RuntimeState.EXPIRED and "walltime reached" in ob.reason
        assert ob.ends_at is not None
        assert "DeadlineExceeded" in ob.log_tail
    finally:
        sim.stop()


# -- stop, attach, restart, names, permissions -----------------------------------------------------------
def _gone(cluster: Cluster, b, rt: Runtime, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [o for o in cluster.pods(b) + cluster.secrets(b) if o["metadata"]["name"] == rt.job_id]
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"left behind: {[o['kind'] + '/' + o['metadata']['name'] for o in left]}")


def test_stop_leaves_nothing_behind(cluster, make_backend):
    b = make_backend(cluster)
    rt = runtime("stopme")
    submit(b, rt)
    started(b, rt)
    info = b.connection(rt)
    b.stop(rt)
    assert not [o for o in cluster.pods(b) + cluster.secrets(b) if o["metadata"]["name"] == rt.job_id]
    if cluster.sim is not None:
        assert not cluster.sim.pod_pid(rt.job_id)
    with pytest.raises(OSError):  # the local forward ports are closed too
        socket.create_connection(("127.0.0.1", info["shell_port"]), timeout=1).close()
    b.stop(rt)  # a second stop is quiet


def test_attach_after_a_local_restart(cluster, make_backend):
    b1 = make_backend(cluster)
    rt = runtime("keep")
    submit(b1, rt)
    started(b1, rt)
    with kernel(b1.connection(rt)) as kc:
        run(kc, "survivor = 'still here'")
    b1.close()  # the notebook kernel went away; the pod did not
    # a new process: the runtime record from disk, a new backend (twice: with and without the pod
    # name in the record, which attach then finds by the pod's labels)
    for state in (dict(rt.backend_state), {}):
        record = Runtime.from_json(json.loads(json.dumps(rt.to_json())))
        record.backend_state = state
        b2 = make_backend(cluster)
        as_read = json.dumps(record.to_json())
        ob = b2.observe([record])[record.name]
        assert ob.state == RuntimeState.STARTING
        with kernel(b2.connection(record)) as kc:
            assert run(kc, "print(survivor)") == "still here\n"
        assert json.dumps(record.to_json()) == as_read  # the record is the manager's: only read here
        b2.close()
    make_backend(cluster).stop(rt)


def test_restart_gives_a_fresh_kernel_in_the_same_pod(cluster, make_backend):
    b = make_backend(cluster)
    rt = runtime("again")
    submit(b, rt)
    started(b, rt)
    with kernel(b.connection(rt)) as kc:
        before = run(kc, "import os; x = 1; print(os.getpid())").strip()
    uid = the_pod(cluster, b, rt)["metadata"]["uid"]
    as_given = json.dumps(rt.to_json())
    changes = b.restart(rt)  # returns what changed; the manager merges it
    assert json.dumps(rt.to_json()) == as_given and changes == {"restarts": 0}
    rt.backend_state.update(changes)
    with kernel(b.connection(rt)) as kc:
        after = run(kc, "import os; print(os.getpid(), 'x' in globals())").strip()
    assert after.split()[1] == "False" and after.split()[0] != before
    pod = the_pod(cluster, b, rt)
    assert pod["metadata"]["uid"] == uid  # same allocation
    rt.state, rt.ready_at = RuntimeState.READY, time.time()
    ob = b.observe([rt])[rt.name]
    assert ob.state == RuntimeState.STARTING, f"{ob.reason}\n{ob.log_tail}"  # a restart we asked for is no death
    b.stop(rt)


@pytest.mark.parametrize("name", ["My_GPU.run!", "a" * 64, "ÜNICODE-λ", "x.y", "___"])
def test_names_kubernetes_rejects_are_normalised(sim_cluster, make_backend, name):
    cluster = sim_cluster
    b = make_backend(cluster)
    rt = runtime(name)
    submit(b, rt)  # the API server validates names: it would answer 422 otherwise
    assert rt.job_id == pod_name(name, b.owner)
    pod = the_pod(cluster, b, rt)
    assert pod["metadata"]["annotations"]["airavata-magic/runtime-name"] == name
    b.stop(rt)


def test_two_names_that_normalise_alike_get_two_pods(sim, make_backend, sim_cluster):
    b = make_backend(sim_cluster)
    a, c = runtime("x_y"), runtime("x.y")
    submit(b, a)
    submit(b, c)
    assert a.job_id != c.job_id and len(sim.pods()) == 2
    with pytest.raises(BackendError, match="already exists"):
        b.request(runtime("x_y"))


def test_authenticate_says_which_permission_is_missing(cluster, make_backend):
    b = make_backend(cluster)
    assert b.authenticate().ok, b.authenticate().detail
    sim = cluster.need_sim("a missing permission")
    sim.deny("create", "pods", "portforward")
    res = b.authenticate()
    assert not res.ok and "create pods/portforward" in res.detail and "namespace research" in res.detail
    sim.deny("create", "pods")
    res = b.authenticate()
    assert "create pods, create pods/portforward" in res.detail
    # and the API's own refusal is one clear line
    with pytest.raises(BackendError, match=r'pods is forbidden: User "sim-user" cannot create.*\(HTTP 403\); run %authenticate'):
        b.request(runtime("forbidden"))
    assert not sim.secrets()  # nothing left from the refused request
    sim.denied.clear()
    sim.deny("patch", "secrets")
    assert "patch secrets" in b.authenticate().detail
    with pytest.raises(BackendError, match="secrets is forbidden"):
        b.request(runtime("unpatched"))
    deadline = time.monotonic() + 10
    while (sim.pods() or sim.secrets()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sim.pods() and not sim.secrets()  # the half-made runtime was removed


def test_bad_credentials_and_unreachable_api_are_one_line(sim, make_backend, tmp_path, sim_cluster):
    cluster = sim_cluster
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(sim.kubeconfig.read_text().replace(sim.token, "wrong-token"))
    res = make_backend(cluster, kubeconfig=str(bad)).authenticate()
    assert not res.ok and "Unauthorized (HTTP 401)" in res.detail and "log in again" in res.detail
    res = make_backend(cluster, context="nope").authenticate()
    assert not res.ok and "context" in res.detail and "\n" not in res.detail
    away = tmp_path / "away-kubeconfig"
    away.write_text(sim.kubeconfig.read_text().replace(f":{sim.port}", ":1"))
    res = make_backend(cluster, kubeconfig=str(away)).authenticate()
    assert not res.ok and "cannot reach the Kubernetes API at https://127.0.0.1:1" in res.detail


def test_missing_image_is_a_clear_error(make_backend, sim_cluster):
    settings = dict(sim_cluster.settings)
    settings.pop("image")
    from airavata_magic.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="no image: set image: in the profile or pass --image"):
        make_backend(settings).request(runtime("noimg"))
    with pytest.raises(InvalidArgument, match="invalid --image"):
        make_backend(settings).request(runtime("noimg", image="bad image;rm -rf"))


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_estimate_start_asks_the_api_server_for_a_dry_run(sim_cluster, make_backend):
    sim = sim_cluster.sim
    b = make_backend(sim_cluster)
    assert b.estimate_start(runtime("dry", gpus=1)) is None  # admitted; when it would run: unknown
    assert sim.pods() == [] and ("POST", "/api/v1/namespaces/research/pods") in sim.requests
    sim.deny("create", "pods")
    with pytest.raises(BackendError, match="the cluster would not accept this pod: .*forbidden"):
        b.estimate_start(runtime("dry"))


def test_a_failed_pod_left_behind_is_replaced_by_a_new_request(sim_cluster, make_backend):
    sim = sim_cluster.sim
    b = make_backend(sim_cluster, image="registry.invalid/x:1")
    rt = runtime("retry")
    submit(b, rt)
    deadline = time.monotonic() + 10
    while "ImagePullBackOff" not in json.dumps(sim.pods()) and time.monotonic() < deadline:
        time.sleep(0.05)  # nobody observed it: the failed pod is still there
    b2 = make_backend(sim_cluster)  # the user fixed the image and asks again
    again = runtime("retry")
    submit(b2, again)
    assert again.job_id == rt.job_id and again.backend_state["uid"] != rt.backend_state["uid"]
    started(b2, again)
    b2.stop(again)


def test_node_flag_binds_the_pod_and_a_wrong_node_is_refused(sim_cluster, make_backend):
    from airavata_magic.errors import InvalidArgument

    sim = sim_cluster.sim
    b = make_backend(sim_cluster)
    rt = runtime("pinned", node="sim-gpu-1")
    submit(b, rt)
    assert sim.pods()[0]["spec"]["nodeName"] == "sim-gpu-1"
    assert started(b, rt).node == "sim-gpu-1"
    b.stop(rt)
    with pytest.raises(InvalidArgument, match="--node sim-gpu-9: the cluster has no node of that name"):
        b.request(runtime("typo", node="sim-gpu-9"))
    with pytest.raises(InvalidArgument, match="invalid --node"):
        b.request(runtime("bad", node="Node_1"))
    sim.deny("get", "nodes")  # most users may not read nodes: then the request goes ahead
    b.request(runtime("unchecked", node="sim-gpu-9"))
    assert any(p["spec"].get("nodeName") == "sim-gpu-9" for p in sim.pods())


def test_a_short_api_outage_does_not_end_a_wait_but_a_long_one_does(sim_cluster, make_backend):
    sim = sim_cluster.sim
    b = make_backend(sim_cluster)
    b.api_grace = 1.0
    rt = runtime("blip")
    submit(b, rt)
    sim.unavailable = True
    ob = b.observe([rt])[rt.name]
    assert ob.state == RuntimeState.QUEUED and "Kubernetes API unreachable" in ob.reason and "retrying" in ob.reason
    sim.unavailable = False
    assert b.observe([rt])[rt.name].state in (RuntimeState.QUEUED, RuntimeState.STARTING)
    sim.unavailable = True
    b.observe([rt])
    time.sleep(1.1)
    with pytest.raises(BackendError, match="unavailable"):
        b.observe([rt])
    sim.unavailable = False
    b.stop(rt)
