"""Scale runs on Slurm: one ``srun``-started job per world size over the resource's SSH connection."""
from __future__ import annotations

import re
import secrets
import shlex
import time
from pathlib import Path
from typing import Any, Callable

from ..backends.scripts import parse_sections, sbatch_options, sbatch_quote, slurm_filename
from ..errors import BackendError, InvalidArgument, RuntimeFailed
from .engine import extract_tar

SCALE_TEMPLATE = """#!/bin/bash
# airavata-magic scale run, rendered by airavata_magic.fanout.scale_slurm.render_scale_script.
#SBATCH --job-name={job_name}
#SBATCH --output={log}
#SBATCH --ntasks={ntasks}
#SBATCH --cpus-per-task={threads}
#SBATCH --dependency=singleton
{directives}
# -- setup (profile) --
{setup}
# -- rendezvous from the job itself: its first node and a free port there --
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=$({python} -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
export OMP_NUM_THREADS={threads} AIRAVATA_THREADS_PER_RANK={threads} AIRAVATA_GPUS_PER_RANK={gpus}
export PYTHONPATH={lib}${{PYTHONPATH:+:$PYTHONPATH}}
srun --kill-on-bad-exit=1 --wait=60 {srun_extra}bash -c 'export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID
export AIRAVATA_RESULTS_DIR="$0/rank-$RANK"; mkdir -p "$AIRAVATA_RESULTS_DIR"
"$1" "$2" > "$AIRAVATA_RESULTS_DIR/stdout.log" 2> "$AIRAVATA_RESULTS_DIR/stderr.log"; rc=$?
echo "$rc" > "$AIRAVATA_RESULTS_DIR/exit"; exit "$rc"' {wdir} {python} {script}
rc=$?
echo "$rc" > {wdir}/exit
exit "$rc"
"""


def render_scale_script(*, job_name: str, wdir: str, lib: str, ntasks: int, threads: int, gpus: int,
                        options: list[tuple[str, str]], setup: list[str], python: str, script: str,
                        overcommit: bool = False) -> str:
    """The job script of one world size (pure; every value quoted)."""
    q = shlex.quote
    directives = [f"#SBATCH {o}={sbatch_quote(v)}" for o, v in options]
    if gpus:
        directives.append(f"#SBATCH --gpus-per-task={int(gpus)}")
    if overcommit:
        directives.append("#SBATCH --overcommit")
    return SCALE_TEMPLATE.format(
        job_name=sbatch_quote(job_name), log=sbatch_quote(slurm_filename(wdir) + "/job.log"), ntasks=int(ntasks),
        threads=int(threads), gpus=int(gpus), directives="\n".join(directives) or "# (no resource options)",
        setup="\n".join(setup) or ":", python=q(python), lib=q(lib), wdir=q(wdir), script=q(script),
        srun_extra="--overcommit " if overcommit else "")


def _partition_limits(engine: Any, partition: str | None) -> tuple[int, int]:
    """(CPUs, GPUs) of the partition's nodes, from sinfo."""
    part = f"-p {shlex.quote(partition)} " if partition else ""
    _, out, _ = engine.run(f"sinfo -h {part}-N -o '%c|%G' 2>/dev/null")
    cpus = gpus = 0
    for line in out.splitlines():
        c, _, g = line.partition("|")
        cpus += int(c) if c.strip().isdigit() else 0
        m = re.search(r"gpu(?::[^:(,]+)?:(\d+)", g)
        gpus += int(m.group(1)) if m else 0
    return cpus, gpus


def run_slurm(res: Any, spec: dict[str, Any], script: Path, sizes: list[int], gpus: int, threads: int, out: Path,
              run_id: str, timeout: float, overcommit: bool, say: Callable[[str], None]) -> None:
    """Submit every world size at once (singleton: they run in turn), wait, bring Results back."""
    from .scale import _failure
    from .slurm import SlurmEngine

    engine = SlurmEngine(res)
    try:
        be = engine.backend
        partition = spec.get("partition") or be.settings.get("partition")
        cpus, node_gpus = _partition_limits(engine, partition)
        for w in sizes:
            if not overcommit and cpus and w * threads > cpus:
                raise InvalidArgument(f"world size {w} x {threads} thread(s) needs {w * threads} CPUs; "
                                      f"{res.name} has {cpus} in its partition")
            if gpus and w * gpus > node_gpus:
                raise InvalidArgument(f"world size {w} x {gpus} GPU(s) is more than the {node_gpus} GPUs of {res.name}")
        engine.check_python()
        rd = f"{be.work_dir()}/scale/{run_id}"
        lib = f"{rd}/lib"
        _upload(engine, rd, script)
        options = sbatch_options(partition=partition, account=spec.get("account") or be.settings.get("account"),
                                 walltime=spec.get("walltime"), memory=spec.get("memory"))
        jobs: dict[int, str] = {}
        for w in sizes:
            text = render_scale_script(job_name=f"scale-{run_id}", wdir=f"{rd}/w{w}", lib=lib, ntasks=w,
                                       threads=threads, gpus=gpus, options=options, setup=be.settings.get("setup", []),
                                       python=be.python, script=f"{rd}/script/{script.name}", overcommit=overcommit)
            wd = shlex.quote(f"{rd}/w{w}")
            rc, o, err = engine.run(f"umask 077 && mkdir -p -- {wd} && cat > {wd}/job.sh && sbatch --parsable {wd}/job.sh",
                                    stdin=text)
            jid = o.strip().split(";")[0] if o.strip() else ""
            if rc != 0 or not jid.isdigit():
                for j in jobs.values():
                    engine.run(f"scancel {shlex.quote(j)}")
                raise BackendError(f"sbatch refused world size {w} on {res.name}: {(err or o).strip()[-300:]}")
            jobs[w] = jid
        say(f"submitted {len(jobs)} job(s): " + ", ".join(f"w{w}={j}" for w, j in jobs.items()))
        _wait(engine, rd, jobs, timeout, say)
        rc, _, err = engine.run(f"cd {shlex.quote(rd)} && tar -cf fetch.tar -- " + " ".join(f"w{w}" for w in sizes))
        data = engine.backend.conn.read_file(f"{rd}/fetch.tar")
        if not data:
            raise BackendError(f"{res.name}: cannot read the results of {run_id}: {err.strip()[-300:]}")
        extract_tar(data, out)
        for w in sizes:
            code = (out / f"w{w}" / "exit").read_text().strip() if (out / f"w{w}" / "exit").is_file() else ""
            if code != "0":
                raise _failure(out, w, f"job {jobs[w]} " + (f"exited {code}" if code else "ended without an exit code"))
    finally:
        engine.close()


def _upload(engine: Any, rd: str, script: Path) -> None:
    import tempfile

    from .scale import HELPER, _helper_source

    with tempfile.TemporaryDirectory() as tmp:
        helper = Path(tmp) / HELPER
        helper.write_bytes(_helper_source())
        engine.upload({f"lib/{HELPER}": str(helper), f"script/{script.name}": str(script)}, rd)


def _wait(engine: Any, rd: str, jobs: dict[int, str], timeout: float, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    last: dict[int, str] = {}
    interval = 0.5
    ids = shlex.quote(",".join(jobs.values()))
    b = "@@" + secrets.token_hex(6)
    try:
        while True:
            _, o, _ = engine.run(f"squeue -h -j {ids} -o '%i|%T|%r' 2>/dev/null; echo {b}; true")
            live = {}
            for line in parse_sections(o, b).get("", "").splitlines():
                jid, _, rest = line.partition("|")
                st, _, why = rest.partition("|")
                # the scheduler's reason while pending (Resources, ReqNodeNotAvail...) is what a user needs
                live[jid.strip()] = st.strip() + (f" ({why.strip()})" if st.strip() == "PENDING" and why.strip() not in ("", "None") else "")
            states = {w: live.get(j, "ENDED") for w, j in jobs.items()}
            if states != last:
                say("  ".join(f"world size {w}: {s.lower()}" for w, s in states.items()))
                last = states
            if all(s == "ENDED" for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise RuntimeFailed(f"scale run not finished after {timeout:.0f} s (jobs {', '.join(jobs.values())} cancelled)")
            time.sleep(interval)
            interval = min(interval * 1.3, 3.0)
    except BaseException:
        engine.run("scancel " + " ".join(shlex.quote(j) for j in jobs.values()))
        raise
