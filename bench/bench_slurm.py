"""Benchmarks of Slurm runtimes on the loopback test bed (starts it, or reuses a running one).

    python bench/bench_slurm.py [--repeats N] [--cells N] [--many 16]

Each figure is printed beside its baseline measured in the same run, as medians (and p95):

1. request -> ready through RuntimeManager (sbatch over SSH, squeue, SFTP, forwards, KernelLink
   kernel_info) versus a bare ``sbatch`` of the same job script with the connection file polled by
   hand over SFTP every 50 ms and jupyter_client's ``wait_for_ready`` over forwards. Goal: <= +0.3 s.
2. a trivial cell (``pass``) through the manager's relay over our SSH forwards versus raw
   jupyter_client over the same forwards.
3. 16 runtimes requested at once (all ready) versus one. Goal: <= 2x one.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jupyter_client import BlockingKernelClient  # noqa: E402

from airavata_magic.backends.base import PORT_NAMES  # noqa: E402
from airavata_magic.manager import RuntimeManager  # noqa: E402
from airavata_magic.runtime import Runtime, RuntimeStore  # noqa: E402
from airavata_magic.transport.ssh import SshConnection  # noqa: E402
from common import NullSink, pct  # noqa: E402
from tests.slurm import testbed  # noqa: E402


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    return pct(xs, 0.95)


def row(what: str, ours: list[float], base: list[float], unit: str = "s", scale: float = 1.0) -> None:
    o, b = med(ours) * scale, med(base) * scale
    print(f"{what:<44} ours {o:8.3f} {unit} (p95 {p95(ours) * scale:.3f})   baseline {b:8.3f} {unit} "
          f"(p95 {p95(base) * scale:.3f})   ratio {o / b:5.2f}x   diff {o - b:+.3f} {unit}")


def hpc_backend(manager: RuntimeManager, profile: str):
    """The manager's own backend of the test bed's ``hpc`` resource (the one its runtimes use)."""
    return manager.backend_for(Runtime(name="bench-probe", resource="hpc", kind="slurm", profile=profile))


def bare_start(manager: RuntimeManager, profile: str, name: str) -> tuple[float, str]:
    """One bare start (see ``bare_many``)."""
    return bare_many(manager, profile, [name])


def bare_many(manager: RuntimeManager, profile: str, names: list[str]) -> tuple[float, str]:
    """sbatch the same job scripts by hand, poll kernel.json over SFTP, forward, kernel_info."""
    backend = hpc_backend(manager, profile)
    rts = [Runtime(name=n, resource="hpc", kind="slurm") for n in names]
    rundirs = [backend.new_run_dir(rt) for rt in rts]
    scripts = [backend.job_script(rt, rd) for rt, rd in zip(rts, rundirs)]  # same job, rendered before the clock
    conn = SshConnection(backend.target)  # its own connection, connected before the clock starts
    wait_idle(conn)
    t0 = time.perf_counter()
    jobs = []
    for rundir, script in zip(rundirs, scripts):
        rd = shlex.quote(rundir)
        rc, out, err = conn.run(f"umask 077 && mkdir -p -- {rd} && cd -- {rd} && cat > job.sh && sbatch --parsable job.sh",
                                stdin=script)
        assert rc == 0, err
        jobs.append(out.strip())
    sftp = conn.sftp()
    clients, fwds, pending = [], [], list(rundirs)
    while pending:
        for rundir in list(pending):
            try:
                with sftp.open(f"{rundir}/kernel.json") as f:
                    info = json.loads(f.read())
                if not all(info[p] for p in PORT_NAMES):
                    continue
            except (OSError, ValueError, KeyError):
                continue
            pending.remove(rundir)
            mine = [conn.forward(info["ip"], info[p]) for p in PORT_NAMES]
            fwds += mine
            kc = BlockingKernelClient()
            kc.load_connection_info(dict(info, ip="127.0.0.1", **{p: f.local_port for p, f in zip(PORT_NAMES, mine)}))
            kc.start_channels()
            clients.append(kc)
        time.sleep(0.05)
    for kc in clients:
        # "Ready" = the kernel answered kernel_info on shell (the leanest check; jupyter_client's own
        # wait_for_ready also insists on an iopub message and retries in 1 s steps).
        while True:
            msg_id = kc.kernel_info()
            try:
                reply = kc.get_shell_msg(timeout=0.5)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                break
    elapsed = time.perf_counter() - t0
    for kc in clients:
        kc.stop_channels()
    for f in fwds:
        f.close()
    sftp.close()
    conn.run(["scancel", *jobs])
    conn.close()
    _last_jobs.extend(jobs)
    return elapsed, ",".join(jobs)


_last_jobs: list[str] = []  # the jobs of the previous measurement


def wait_idle(conn: SshConnection, timeout: float = 30) -> None:
    """Start each measurement once the previous measurement's jobs are gone (not pending, running
    or completing), so that no measurement pays for the previous one's teardown. Jobs of other
    users of the test bed are left alone (and are a source of noise: run this on a quiet machine)."""
    if not _last_jobs:
        return
    ids = ",".join(_last_jobs)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = conn.run(["squeue", "-h", "-a", "-j", ids, "-t", "PD,R,CG,CF", "-o", "%i"])[1]
        if not out.strip():
            break
        time.sleep(0.1)
    _last_jobs.clear()


def ours_start(manager: RuntimeManager, profile: str, name: str) -> float:
    backend = hpc_backend(manager, profile)
    wait_idle(backend.conn)
    t0 = time.perf_counter()
    rt, _ = manager.request(name, file=profile, resource="hpc")
    manager.wait(name, timeout=120)
    elapsed = time.perf_counter() - t0
    _last_jobs.append(rt.job_id)
    return elapsed


def cells(manager: RuntimeManager, profile: str, n: int) -> None:
    """A trivial cell through the manager's relay vs raw jupyter_client, over the same forwards."""
    manager.request("cells", file=profile, resource="hpc")
    manager.wait("cells", timeout=120)
    rt = manager.get("cells")
    info = manager.backend_for(rt).connection(rt)  # the same forwards the manager's link uses
    kc = BlockingKernelClient()
    kc.load_connection_info(info)
    kc.start_channels()
    kc.wait_for_ready(timeout=30)
    sink = NullSink()
    for _ in range(20):  # warm both paths
        manager.run(["cells"], "pass", sink)
        kc.execute_interactive("pass", timeout=30, output_hook=lambda m: None)
    t_ours, t_raw = [], []
    for _ in range(n):  # interleaved
        t0 = time.perf_counter()
        manager.run(["cells"], "pass", sink)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        kc.execute_interactive("pass", timeout=30, output_hook=lambda m: None)
        t_raw.append(time.perf_counter() - t0)
    row("trivial cell over SSH forwards", t_ours, t_raw, unit="ms", scale=1000)
    kc.stop_channels()
    manager.stop("cells")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--cells", type=int, default=300)
    ap.add_argument("--many", type=int, default=16)
    ap.add_argument("--many-repeats", type=int, default=3)
    args = ap.parse_args()

    tb = testbed.start()
    print(f"test bed: {tb.user}@{tb.host}:{tb.port}, node {tb.node}, {os.cpu_count()} cores "
          f"(daemons started here: {len(tb.started_pids)})")
    home = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    os.environ["AIRAVATA_MAGIC_HOME"] = str(home)
    manager = RuntimeManager(store=RuntimeStore(home), warn=lambda text: None)
    profile = str(tb.profile)
    try:
        # warm-up: SSH connection, launcher upload, first kernel import from a cold page cache
        ours_start(manager, profile, "warmup")
        manager.stop("warmup")
        bare_start(manager, profile, "warmup-bare")

        ours, base = [], []
        for i in range(args.repeats):  # interleaved, so drift hits both alike
            ours.append(ours_start(manager, profile, f"r{i}"))
            manager.stop(f"r{i}")
            base.append(bare_start(manager, profile, f"b{i}")[0])
        row("request -> ready (1 runtime)", ours, base)

        try:
            cells(manager, profile, args.cells)
        except Exception as e:  # noqa: BLE001 - report and go on to the next figure
            print(f"{'trivial cell over SSH forwards':<44} NOT MEASURED: {type(e).__name__}: {e}")
            manager.stop("cells")

        one, many = [], []
        for k in range(args.many_repeats):
            one.append(ours_start(manager, profile, f"one{k}"))
            manager.stop(f"one{k}")
            names = [f"m{k}-{i}" for i in range(args.many)]
            wait_idle(hpc_backend(manager, profile).conn)
            t0 = time.perf_counter()
            for n in names:
                _last_jobs.append(manager.request(n, file=profile, resource="hpc")[0].job_id)
            for n in names:
                manager.wait(n, timeout=300)
            many.append(time.perf_counter() - t0)
            for n in names:
                manager.stop(n)
        row(f"{args.many} runtimes at once vs 1 (all ready)", many, one)
        bare16 = [bare_many(manager, profile, [f"bm{k}-{i}" for i in range(args.many)])[0]
                  for k in range(args.many_repeats)]
        row(f"{args.many} at once: ours vs {args.many} bare sbatch", many, bare16)
    finally:
        manager.stop_all()
        manager.close()
        if os.environ.get("AIRAVATA_TESTBED_KEEP") != "1":
            tb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
