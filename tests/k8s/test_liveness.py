"""``KubernetesBackend.kernel_alive`` answers within its deadline even when the API server is
slow (the Kubernetes API simulator with ``delay``; not a cluster): it is asked on every poll of a
running cell, and the heartbeat gives up after 3.5 s, so a slow answer would freeze the cell's
output and could get a live kernel declared dead."""
from __future__ import annotations

import time

from airavata_magic.runtime import RuntimeState

from .conftest import runtime, started, submit


def _until(predicate, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def test_a_slow_api_server_never_holds_the_liveness_check_past_its_deadline(sim_cluster, make_backend):
    sim = sim_cluster.sim
    b = make_backend(sim_cluster)
    b.alive_interval = 0.2  # ask the API (not the cache) on almost every call
    rt = runtime("slowapi")
    submit(b, rt)
    started(b, rt)
    rt.state, rt.ready_at = RuntimeState.READY, time.time()
    _until(lambda: b.kernel_alive(rt, timeout=1.0) is True, what="a fast API answers alive")

    sim.delay = 5.0  # every REST request now takes 5 s
    time.sleep(b.alive_interval)
    worst = 0.0
    answers = set()
    for _ in range(10):  # what the relay's poll loop does for about a second of a running cell
        t0 = time.monotonic()
        answers.add(b.kernel_alive(rt, timeout=0.2))
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.05)
    # the last answer it had (alive) or none: never "dead" because the API is slow, never blocked
    assert worst < 0.6, f"kernel_alive took {worst:.2f} s with a 0.2 s deadline"
    assert answers <= {True, None}

    sim.delay = 0.0
    sim.delete_pod(rt.job_id)  # ... and once the API answers again, a real death is seen
    _until(lambda: b.kernel_alive(rt, timeout=1.0) is False, timeout=30, what="the deleted pod is seen")
    b.stop(rt)


def test_liveness_checks_end_with_the_backend(sim_cluster, make_backend):
    """The liveness reads run on one thread the backend owns; close() lets it go."""
    import threading

    b = make_backend(sim_cluster)
    rt = runtime("owned")
    submit(b, rt)
    started(b, rt)
    before = set(threading.enumerate())  # backends of earlier tests may hold threads of this name
    b.kernel_alive(rt, timeout=5.0)
    mine = [t for t in set(threading.enumerate()) - before if t.name.startswith("k8s-alive-lab")]
    assert mine
    b.stop(rt)
    b.close()
    # a read still in flight ends by its own request timeout (one retry: twice that); on a loaded
    # machine that took longer than a fixed 10 s, so the bound is the timeouts plus slack
    deadline = time.monotonic() + 2 * b.alive_request_timeout + 20
    for t in mine:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not [t.name for t in mine if t.is_alive()]


def test_pod_liveness_waits_no_longer_than_asked_and_lets_bugs_surface():
    """``PodLiveness`` on its own: a read that hangs, then answers; and a read with a bug."""
    import threading

    import pytest

    from airavata_magic.backends.kubernetes.liveness import PodLiveness

    release = threading.Event()
    reads: list[str] = []

    def read(name: str) -> bool | None:
        reads.append(name)
        release.wait(10)
        return True

    live = PodLiveness(read, interval=60.0, thread_name="test-liveness")
    t0 = time.monotonic()
    assert live.alive("a", timeout=0.1) is None and live.alive("a", timeout=0.1) is None
    assert time.monotonic() - t0 < 1.0 and reads == ["a"]  # one read in flight, not one per question
    release.set()
    _until(lambda: live.alive("a", timeout=1.0) is True, what="the answer arrives")
    assert reads == ["a"]  # then cached for `interval`
    live.forget("a")
    assert live.alive("a", timeout=5.0) is True and reads == ["a", "a"]
    live.close()

    broken = PodLiveness(lambda name: {}[name], interval=1.0, thread_name="test-liveness-bug")
    with pytest.raises(KeyError):
        broken.alive("x", timeout=5.0)
    broken.close()
