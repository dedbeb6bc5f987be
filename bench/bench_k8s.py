"""Kubernetes runtimes against the Kubernetes API *simulator* (tests/k8s/simulator.py; not a
cluster): what our side costs, each figure beside a baseline measured in the same run.

1. Request -> ready, split into
   - API time: ``backend.request()`` (get, Secret create, pod create, Secret patch over HTTPS);
   - pod start: until ``observe()`` reports the container running (the simulator's scheduler and
     kubelet, polled every 10 ms);
   - kernel start: until the kernel answers ``kernel_info`` through the port-forward
     (``connection()`` + ``KernelLink.wait_ready``).
   Baseline: ``jupyter_client`` starting the same ipykernel locally until ``wait_for_ready``.
2. A trivial cell (``1+1``) through the port-forward: via our relay (``KernelLink`` +
   ``run_cell``) and via raw ``jupyter_client`` through the same forward; reference: raw
   ``jupyter_client`` to a local kernel with no forward (the forward's own cost is the difference).

Medians and p95 over the repeats. Usage: python bench/bench_k8s.py [--starts 15] [--cells 300]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jupyter_client import BlockingKernelClient, KernelManager  # noqa: E402

from airavata_magic.profile import Resource  # noqa: E402
from airavata_magic.backends.kubernetes import KubernetesBackend  # noqa: E402
from airavata_magic.relay import KernelLink, run_cell  # noqa: E402
from common import NullSink, ms  # noqa: E402
from airavata_magic.runtime import Runtime, RuntimeSpec  # noqa: E402

IMAGE = "sim/kernel:1"


def raw_cell(kc: BlockingKernelClient, code: str = "1+1") -> float:
    """One execute round trip with jupyter_client: until the reply and the cell's idle status.

    Blocking waits, not polling: a polling loop holds the GIL and delays every other thread of
    this process (the port-forward's among them) by up to the 5 ms switch interval.
    """
    t0 = time.perf_counter()
    msg_id = kc.execute(code)
    while kc.get_shell_msg(timeout=10)["parent_header"].get("msg_id") != msg_id:
        pass
    while True:
        m = kc.get_iopub_msg(timeout=10)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status" \
                and m["content"]["execution_state"] == "idle":
            return time.perf_counter() - t0


def start_local_kernel() -> tuple[float, KernelManager, BlockingKernelClient]:
    t0 = time.perf_counter()
    km = KernelManager(kernel_name="python3")
    km.kernel_spec.argv[0] = sys.executable
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return time.perf_counter() - t0, km, kc


def request_to_ready(b: KubernetesBackend, i: int) -> tuple[float, float, float, Callable[[], None]]:
    rt = Runtime(name=f"bench-{i}", resource="lab", kind="kubernetes", spec=RuntimeSpec(cpus=1, memory=512))
    t0 = time.perf_counter()
    b.request(rt)
    t1 = time.perf_counter()
    while b.observe([rt])[rt.name].reason != "Running":
        time.sleep(0.01)
    t2 = time.perf_counter()
    info = None
    while info is None:
        info = b.connection(rt)
    link = KernelLink(info, label=rt.name)
    link.wait_ready(timeout=60)
    t3 = time.perf_counter()

    def cleanup() -> None:
        link.close()
        b.stop(rt)

    return t1 - t0, t2 - t1, t3 - t2, cleanup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=15)
    ap.add_argument("--cells", type=int, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    # the simulator runs in its own process, so that it does not share this one's GIL
    sim = subprocess.Popen([sys.executable, "-m", "tests.k8s.simulator", str(work / "sim"),
                            f"{IMAGE}={Path(sys.executable).parent}"], cwd=ROOT, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None and sim.stdin is not None
    served = json.loads(sim.stdout.readline())
    b = KubernetesBackend(Resource("lab", "kubernetes", {"kubeconfig": served["kubeconfig"], "context": "sim",
                                                         "image": IMAGE}, "bench"),
                          lambda n: (work / "rt" / n).mkdir(parents=True, exist_ok=True) or work / "rt" / n)
    print(f"Kubernetes API simulator (not a cluster) at {served['url']}, in its own process; "
          f"pods in their own network namespace: {served['netns']}")
    try:
        b.authenticate()  # warm: client import, TLS, first connection
        request_to_ready(b, -1)[3]()  # warm: the first pod (imports, first portforward)
        api, pod, kernel, local = [], [], [], []
        for i in range(args.starts):
            a, s, k, cleanup = request_to_ready(b, i)
            cleanup()
            api.append(a), pod.append(s), kernel.append(k)
            t, km, kc = start_local_kernel()
            kc.stop_channels()
            km.shutdown_kernel(now=True)
            local.append(t)
        total = [a + s + k for a, s, k in zip(api, pod, kernel)]
        print(f"\n1. request -> ready ({args.starts} starts)")
        print(f"   API time           {ms(api)}")
        print(f"   pod start          {ms(pod)}")
        print(f"   kernel start       {ms(kernel)}")
        print(f"   total (ours)       {ms(total)}")
        print(f"   baseline: local jupyter_client start_kernel -> ready   {ms(local)}")
        print(f"   ratio ours/baseline (medians): {statistics.median(total) / statistics.median(local):.2f}x")

        # 2. trivial cells
        rt = Runtime(name="cells", resource="lab", kind="kubernetes")
        b.request(rt)
        while b.observe([rt])[rt.name].reason != "Running":
            time.sleep(0.01)
        info = None
        while info is None:
            info = b.connection(rt)
        link = KernelLink(info, label="cells")
        link.wait_ready(timeout=60)
        kc = BlockingKernelClient()
        kc.load_connection_info(info)
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        _, km, lkc = start_local_kernel()
        local_link = KernelLink(km.get_connection_info(session=True) | {"key": km.session.key.decode()}, label="local")
        local_link.wait_ready(timeout=60)
        relay_t, raw_t, local_t, relay_local_t, relay_errors = [], [], [], [], []
        for _ in range(20):  # warm-up
            raw_cell(kc), raw_cell(lkc)
        for _ in range(args.cells):
            raw_t.append(raw_cell(kc))
            local_t.append(raw_cell(lkc))
            t0 = time.perf_counter()
            try:
                run_cell([local_link], "1+1", NullSink())
                relay_local_t.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001
                relay_errors.append(f"{type(e).__name__}: {e}")
                local_link.close()
                local_link = KernelLink(km.get_connection_info(session=True) | {"key": km.session.key.decode()})
                local_link.wait_ready(timeout=60)
            t0 = time.perf_counter()
            try:
                run_cell([link], "1+1", NullSink())
                relay_t.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - reported below, the bench goes on
                relay_errors.append(f"{type(e).__name__}: {e}")
                link.close()
                link = KernelLink(info, label="cells")
                link.wait_ready(timeout=60)
        print(f"\n2. trivial cell '1+1' ({args.cells} runs each, interleaved)")
        if relay_t:
            print(f"   relay (KernelLink) through the port-forward   {ms(relay_t)}")
        if relay_local_t:
            print(f"   relay (KernelLink) to a local kernel            {ms(relay_local_t)}")
        if relay_errors:
            print(f"   relay failures: {len(relay_errors)} of {2 * args.cells}, e.g. {relay_errors[0]}")
        print(f"   raw jupyter_client through the same forward    {ms(raw_t)}")
        print(f"   raw jupyter_client to a local kernel            {ms(local_t)}")
        if relay_t:
            print(f"   ratio relay/raw through the forward (medians): "
                  f"{statistics.median(relay_t) / statistics.median(raw_t):.2f}x")
        print(f"   ratio forward/local, raw jupyter_client (medians): {statistics.median(raw_t) / statistics.median(local_t):.2f}x"
              f"   forward's own cost: {(statistics.median(raw_t) - statistics.median(local_t)) * 1000:+.2f} ms")
        if relay_t and relay_local_t:
            print(f"   ratio forward/local, relay (medians): {statistics.median(relay_t) / statistics.median(relay_local_t):.2f}x"
                  f"   forward's own cost: {(statistics.median(relay_t) - statistics.median(relay_local_t)) * 1000:+.2f} ms")
        local_link.close()
        link.close()
        kc.stop_channels()
        lkc.stop_channels()
        km.shutdown_kernel(now=True)
        b.stop(rt)
    finally:
        b.close()
        sim.stdin.close()
        sim.wait(30)


if __name__ == "__main__":
    main()
