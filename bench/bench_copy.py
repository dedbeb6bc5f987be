"""Benchmarks of copies, variables and dataset cache hits on the loopback test bed.

    python bench/bench_copy.py [--repeats 5] [--size-mb 200] [--files 10000] [--skip-candidates]

Every figure is printed beside a baseline measured in the same run, as a ratio of medians
(>1 = we are faster):

1. one SIZE MB file, download and upload: ``storage.copy`` (asyncssh, 16 MiB in-order chunks with
   the next one in flight) versus OpenSSH ``scp`` over the same sshd. Goals: download >= 0.9x,
   upload >= 0.85x. Ours asks for AES-GCM first (``sshlogin.bulk_ciphers``); scp uses its default
   (chacha20-poly1305), so ``scp -c aes128-gcm@openssh.com`` is measured too, as the same-cipher
   baseline. The candidates we chose between are measured too: paramiko SFTP get/put (the
   project's control connection) and sshfs ``get_file``/``put_file`` with ``block_size=-1``.
2. FILES files of 4 KB: ``storage.copy --recursive`` (one tar stream) versus ``scp -r`` (goal >= 1x)
   and ``tar | ssh`` (goal >= 0.9x); the download of the same tree versus ``scp -r``.
3. ``pull_vars`` of a 100 MB float64 array from a local runtime versus a raw in-band ``pickle`` of
   it sent over the same kernel connection in one comm message (goal >= 0.8x).
4. a second ``dataset.load`` (cache hit) on an ssh runtime of the test bed (goal < 100 ms), beside
   one bare SSH round trip (``true``) on the same pooled connection.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.slurm import testbed  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def row(what: str, ours: list[float], base: list[float], base_name: str, nbytes: int | None = None) -> None:
    o, b = med(ours), med(base)
    rate = lambda t: f" {nbytes / t / 1e6:7.1f} MB/s" if nbytes else ""  # noqa: E731
    print(f"{what:<38} ours {o * 1e3:9.1f} ms{rate(o)}   {base_name:<14} {b * 1e3:9.1f} ms{rate(b)}   "
          f"ratio {b / o:5.2f}x", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--skip-candidates", action="store_true", help="skip paramiko and sshfs get/put")
    ap.add_argument("--only", default="big,small,vars,dataset", help="sections to run, comma-separated")
    args = ap.parse_args()
    tb = testbed.start()
    work = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    os.environ["AIRAVATA_MAGIC_HOME"] = str(work / "home")
    os.environ["AIRAVATA_MAGIC_PROFILE"] = str(tb.profile)
    from airavata_magic import storage
    from airavata_magic.manager import RuntimeManager
    from airavata_magic.transport.ssh import connection_for

    manager = RuntimeManager(warn=lambda _t: None)
    ssh = ["-i", str(tb.identity_file), "-o", f"UserKnownHostsFile={tb.known_hosts}", "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=yes"]
    scp = ["scp", "-q", "-P", str(tb.port), *ssh]
    login = f"{tb.user}@{tb.host}"

    def remote(cmd: str) -> None:
        subprocess.run(["ssh", "-p", str(tb.port), *ssh, login, cmd], check=True, capture_output=True)

    try:
        remote("rm -rf bench-copy && mkdir -p bench-copy")
        storage.register("bench", "hpc:~/bench-copy")
        fs, root = storage.filesystem("bench")
        only = set(args.only.split(","))
        conn = connection_for(storage.get("bench").target())
        size = args.size_mb << 20
        big = work / "big.bin"
        with open(big if "big" in only else os.devnull, "wb") as f:
            for _ in range(args.size_mb if "big" in only else 0):
                f.write(os.urandom(1 << 20))
        runs: dict[str, list[float]] = {k: [] for k in ("down", "up", "scp_down", "scp_up", "pm_down", "pm_up",
                                                        "sshfs_down", "sshfs_up", "gcm_down", "gcm_up")}
        if "big" in only:
            print(f"# {args.size_mb} MB file, {args.repeats} repeats, loopback sshd {tb.host}:{tb.port}")
            storage.copy(str(big), "bench:big.bin", progress=False)  # warm: connections made, file there
        for _ in range(args.repeats if "big" in only else 0):
            runs["down"].append(timed(lambda: storage.copy("bench:big.bin", str(work / "d.bin"), progress=False)))
            runs["scp_down"].append(timed(lambda: subprocess.run(
                [*scp, f"{login}:bench-copy/big.bin", str(work / "s.bin")], check=True)))
            runs["up"].append(timed(lambda: storage.copy(str(big), "bench:up.bin", progress=False)))
            runs["scp_up"].append(timed(lambda: subprocess.run(
                [*scp, str(big), f"{login}:bench-copy/scp-up.bin"], check=True)))
            runs["gcm_down"].append(timed(lambda: subprocess.run(
                [*scp, "-c", "aes128-gcm@openssh.com", f"{login}:bench-copy/big.bin", str(work / "g.bin")], check=True)))
            runs["gcm_up"].append(timed(lambda: subprocess.run(
                [*scp, "-c", "aes128-gcm@openssh.com", str(big), f"{login}:bench-copy/gcm-up.bin"], check=True)))
            if not args.skip_candidates:
                with conn.sftp() as s:
                    runs["pm_down"].append(timed(lambda: s.get(f"{root}/big.bin", str(work / "p.bin"))))
                    runs["pm_up"].append(timed(lambda: s.put(str(big), f"{root}/pm-up.bin")))
                runs["sshfs_down"].append(timed(lambda: fs.get_file(f"{root}/big.bin", str(work / "f.bin"),
                                                                     block_size=-1)))
                runs["sshfs_up"].append(timed(lambda: fs.put_file(str(big), f"{root}/fs-up.bin", block_size=-1)))
        if "big" in only:
            row("download (storage.copy)", runs["down"], runs["scp_down"], "scp", size)
            row("upload (storage.copy)", runs["up"], runs["scp_up"], "scp", size)
            row("download, same cipher", runs["down"], runs["gcm_down"], "scp -c gcm", size)
            row("upload, same cipher", runs["up"], runs["gcm_up"], "scp -c gcm", size)
        if "big" in only and not args.skip_candidates:
            row("  candidate: paramiko get", runs["pm_down"], runs["scp_down"], "scp", size)
            row("  candidate: paramiko put", runs["pm_up"], runs["scp_up"], "scp", size)
            row("  candidate: sshfs get_file -1", runs["sshfs_down"], runs["scp_down"], "scp", size)
            row("  candidate: sshfs put_file -1", runs["sshfs_up"], runs["scp_up"], "scp", size)

        # -- many small files ------------------------------------------------------------------
        if "small" in only:
            small_files(args, storage, work, scp, ssh, login, tb)
        if "vars" in only:
            pull_bench(args, storage, manager)
        if "dataset" in only:
            dataset_bench(args, storage, manager, conn, remote)
    finally:
        manager.stop_all()
        manager.close()
        shutil.rmtree(work, ignore_errors=True)
        tb.stop()
    return 0


def small_files(args, storage, work, scp, ssh, login, tb) -> None:
    """Section 2: many small files up (versus scp -r and tar | ssh) and down (versus scp -r)."""
    tree = work / "tree"
    for i in range(args.files):
        d = tree / f"d{i // 1000}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.dat").write_bytes(os.urandom(4096))
    up = {"ours": [], "scp": [], "tar": []}
    down = {"ours": [], "scp": []}
    reps = max(1, min(3, args.repeats))
    for i in range(reps):
        up["ours"].append(timed(lambda: storage.copy(str(tree), f"bench:t{i}", recursive=True, progress=False)))
        up["scp"].append(timed(lambda: subprocess.run([*scp, "-r", str(tree), f"{login}:bench-copy/s{i}"],
                                                      check=True)))
        tar = (f"tar -C {shlex.quote(str(work))} -cf - tree | ssh -p {tb.port} "
               f"{' '.join(shlex.quote(a) for a in ssh)} {login} 'mkdir -p bench-copy/r{i} && "
               f"tar -xf - -C bench-copy/r{i}'")
        up["tar"].append(timed(lambda: subprocess.run(tar, shell=True, check=True)))
        down["ours"].append(timed(lambda: storage.copy(f"bench:t{i}", str(work / f"back{i}"), recursive=True,
                                                       progress=False)))
        down["scp"].append(timed(lambda: subprocess.run([*scp, "-r", f"{login}:bench-copy/t{i}",
                                                         str(work / f"sback{i}")], check=True)))
    print(f"# {args.files} files of 4 KB, {reps} repeats")
    row("tree upload (storage.copy -r)", up["ours"], up["scp"], "scp -r")
    row("tree upload (storage.copy -r)", up["ours"], up["tar"], "tar | ssh")
    row("tree download (storage.copy -r)", down["ours"], down["scp"], "scp -r")


def pull_bench(args, storage, manager) -> None:
    """Section 3: pull_vars of a 100 MB array versus a raw in-band pickle on the same connection."""
    import pickle

    from airavata_magic.storage.variables import QuietSink

    manager.request("bench_local", resource="local")
    manager.wait("bench_local", timeout=120)
    manager.run(["bench_local"], "import numpy as np; big = np.random.rand(100 * 1024 * 1024 // 8)",
                QuietSink(), silent=True)
    raw_code = ("import pickle\nfrom comm import create_comm\n"
                "c = create_comm(target_name='bench.raw', data={}, buffers=[pickle.dumps(big, protocol=5)])\n"
                "c.close()")

    def raw() -> None:
        sink = QuietSink()
        manager.run(["bench_local"], raw_code, sink, silent=True)
        pickle.loads([b for t, c, b in sink.comms if t == "comm_open"][0][0])

    pulls, raws = [], []
    for _ in range(args.repeats):
        pulls.append(timed(lambda: storage.pull_vars("bench_local", ["big"], manager=manager)))
        raws.append(timed(raw))
    print("# 100 MB float64 array from a local runtime")
    row("pull_vars", pulls, raws, "raw pickle", 100 << 20)


def dataset_bench(args, storage, manager, conn, remote) -> None:
    """Section 4: a second dataset load (cache hit) on an ssh runtime, beside one SSH round trip."""
    remote("mkdir -p bench-copy/ds && echo x > bench-copy/ds/x.txt")
    storage.dataset.register("bench-ds", "bench:ds")
    manager.request("bench_ws", resource="ws")
    manager.wait("bench_ws", timeout=120)
    storage.dataset.load("bench-ds", "bench_ws", manager=manager, progress=False)  # the miss
    hits = [timed(lambda: storage.dataset.load("bench-ds", "bench_ws", manager=manager))
            for _ in range(max(5, args.repeats))]
    trips = [timed(lambda: conn.run("true")) for _ in range(max(5, args.repeats))]
    print("# second dataset load on an ssh runtime (goal < 100 ms)")
    row("dataset load, cache hit", hits, trips, "ssh true")


if __name__ == "__main__":
    sys.exit(main())
