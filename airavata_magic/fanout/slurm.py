"""Fan-out on Slurm: ONE job array per submission, over the resource's pooled SSH connection.

``sbatch --array=0-(n-1)%N array.sh LIST``: task ``i`` reads line ``i+1`` of the list file
(``TASK<TAB>INPUT``), runs ``python ALG INPUT OUTDIR`` after the profile's setup lines, and
records the exit code. Slurm's own logs are ``logs/%A_%a.log``. An array larger than the
cluster's ``MaxArraySize`` is split into several arrays (each with its own list file).

Remote layout, under the profile's ``work_dir``: ``fanout/<run_id>/`` (0700) holding
``array.sh``, ``list-<s>-<k>.tsv``, ``inputs/`` (staged), ``alg/`` (staged algorithm), ``logs/``
and ``out/<task>/``.
"""
from __future__ import annotations

import re
import secrets
import shlex
from typing import TYPE_CHECKING

from ..backends.scripts import parse_sections, sbatch_options, sbatch_quote, slurm_filename
from ..errors import BackendError, InvalidArgument
from .engine import DONE, FAILED, PENDING, RUNNING, STDERR_TAIL, Engine, TaskStatus, extract_tar, state_from_exit, tar_bytes
from .record import Submission, list_file_text, task_dir_name

if TYPE_CHECKING:
    from ..backends.base import Resource
    from .record import FanoutRun

_JOB_ID = re.compile(r"^\d+$")
_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"}

ARRAY_TEMPLATE = """#!/bin/bash
# airavata-magic fan-out array, rendered by airavata_magic.fanout.slurm.render_array_script.
# Every value below was quoted when it was rendered; the setup lines come from the profile as written.
#SBATCH --job-name={job_name}
#SBATCH --output={log}
{directives}
# -- setup (profile) --
{setup}
# -- one task: line SLURM_ARRAY_TASK_ID+1 of the list file given as $1 is TASK<TAB>INPUT --
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$1")
task=${{line%%$'\\t'*}}
input=${{line#*$'\\t'}}
out={outputs}/$(printf '%05d' "$task")
mkdir -p -- "$out" && rm -f -- "$out/exit"
{command} "$input" "$out" > "$out/stdout.log" 2> "$out/stderr.log"
rc=$?
echo "$rc" > "$out/exit"
exit "$rc"
"""


def render_array_script(*, job_name: str, log_dir: str, options: list[tuple[str, str]], setup: list[str],
                        python: str, algorithm: str, outputs: str) -> str:
    """The array job script (pure; a golden test pins it). ``#SBATCH`` values are quoted for
    sbatch, shell values with ``shlex.quote``; setup lines are shell code by design."""
    for line in setup:
        if "\n" in line or "\r" in line:
            raise InvalidArgument("each setup entry must be one shell line")
    return ARRAY_TEMPLATE.format(
        job_name=sbatch_quote(job_name),
        log=sbatch_quote(slurm_filename(log_dir) + "/%A_%a.log"),
        directives="\n".join(f"#SBATCH {o}={sbatch_quote(v)}" for o, v in options) or "# (no resource options)",
        setup="\n".join(setup) or ":",
        command=" ".join(shlex.quote(a) for a in (python, algorithm)),
        outputs=shlex.quote(outputs),
    )


def array_spec(count: int, parallel: int) -> str:
    """``0-(n-1)%N`` (the throttle left out when it would not limit anything)."""
    spec = f"0-{count - 1}"
    return spec if parallel >= count else f"{spec}%{parallel}"


class SlurmEngine(Engine):
    """Job arrays submitted with sbatch over the resource's one SSH connection."""

    kind = "slurm"

    def __init__(self, resource: "Resource") -> None:
        super().__init__(resource)
        from ..backends.slurm import SlurmBackend  # paramiko: imported on use only

        self.backend = SlurmBackend(resource, lambda name: None)
        self._max_array: int | None = None

    # -- what the resource sees ----------------------------------------------------------
    def run(self, command: str, stdin: bytes | str | None = None, timeout: float = 120) -> tuple[int, str, str]:
        return self.backend.run(command, stdin=stdin, timeout=timeout)

    def run_dir(self, run_id: str) -> str:
        return f"{self.backend.work_dir()}/fanout/{run_id}"

    def glob(self, pattern: str) -> list[str]:
        code = "import glob,os,sys; print('\\n'.join(sorted(p for p in glob.glob(os.path.expanduser(sys.argv[1])) if os.path.isfile(p))))"
        rc, out, err = self.run(f"{shlex.quote(self.backend.python)} -c {shlex.quote(code)} {shlex.quote(pattern)}")
        if rc != 0:
            raise BackendError(f"{self.resource.name}: cannot list {pattern!r}: {err.strip()[-300:]}")
        return [line for line in out.splitlines() if line]

    def is_file(self, path: str) -> bool:
        rc, _, _ = self.run(f"test -f {shlex.quote(path)}")
        return rc == 0

    def check_python(self) -> None:
        rc, _, err = self.run(f"{shlex.quote(self.backend.python)} -c pass")
        if rc != 0:
            raise BackendError(f"{self.resource.name}: python {self.backend.python!r} does not run there "
                               f"({err.strip()[-200:] or rc}); set python: in the profile")

    def upload(self, files: dict[str, str], into: str) -> None:
        d = shlex.quote(into)
        rc, _, err = self.run(f"umask 077 && mkdir -p -- {d} && tar -C {d} -xf -", stdin=tar_bytes(files), timeout=600)
        if rc != 0:
            raise BackendError(f"{self.resource.name}: cannot stage files into {into}: {err.strip()[-300:]}")

    def max_array_size(self) -> int:
        """The cluster's MaxArraySize (array indices must stay below it)."""
        if self._max_array is None:
            _, out, _ = self.run("scontrol show config 2>/dev/null | grep -i '^MaxArraySize'")
            m = re.search(r"=\s*(\d+)", out)
            self._max_array = int(m.group(1)) if m else 1001
        return self._max_array

    # -- the run ---------------------------------------------------------------------------
    def submit(self, run: "FanoutRun", tasks: list[int]) -> Submission:
        sub = Submission(tasks=list(tasks))
        size = max(1, self.max_array_size())
        chunks = [tasks[i:i + size] for i in range(0, len(tasks), size)]
        sub.chunk = size if len(chunks) > 1 else 0
        rd, outs = run.remote_dir, self.outputs_dir(run)
        spec = run.spec or {}
        options = sbatch_options(partition=spec.get("partition") or self.backend.settings.get("partition"),
                                 account=spec.get("account") or self.backend.settings.get("account"),
                                 walltime=spec.get("walltime"), cpus=spec.get("cpus"), memory=spec.get("memory"),
                                 gpus=spec.get("gpus"))
        script = render_array_script(job_name=f"fanout-{run.run_id}", log_dir=f"{rd}/logs", options=options,
                                     setup=self.backend.settings.get("setup", []), python=self.backend.python,
                                     algorithm=run.algorithm, outputs=outs)
        seq = len(run.submissions)
        q = shlex.quote
        # One remote shell script (set -e): directories, the script (stdin), the list files as
        # quoted here-docs (no expansion; no line can equal the random delimiter), one sbatch each.
        lines = ["set -e", "umask 077", f"mkdir -p -- {q(rd + '/logs')} {q(outs)}", f"chmod 700 -- {q(rd)}",
                 f"cat > {q(rd + '/array.sh')}"]
        stale = [f"{outs}/{task_dir_name(t)}/exit" for t in tasks]
        for i in range(0, len(stale), 500):  # a retried task must not look finished before it runs
            lines.append("rm -f -- " + " ".join(q(p) for p in stale[i:i + 500]))
        for k, chunk in enumerate(chunks):
            lst = f"{rd}/list-{seq}-{k}.tsv"
            eof = "EOF_" + secrets.token_hex(8)
            lines.append(f"cat > {q(lst)} <<'{eof}'\n{list_file_text([(t, run.inputs[t]) for t in chunk])}{eof}")
            lines.append(f"sbatch --parsable --array={q(array_spec(len(chunk), run.parallel))} "
                         f"{q(rd + '/array.sh')} {q(lst)}")
        rc, out, err = self.run("\n".join(lines), stdin=script)
        ids = [line.split(";")[0].strip() for line in out.splitlines() if line.strip()]
        sub.job_ids = [i for i in ids if _JOB_ID.match(i)]
        if rc != 0 or len(sub.job_ids) != len(chunks):
            if sub.job_ids:
                self.run("scancel " + " ".join(q(i) for i in sub.job_ids))
            msg = " ".join((err or out).strip().splitlines()[-2:]) or f"exit code {rc}"
            raise BackendError(f"sbatch refused the fan-out array on {self.resource.name}: {msg}")
        return sub

    def poll(self, run: "FanoutRun") -> dict[int, TaskStatus]:
        latest = _latest_submission_of(run)
        jobs = {jid: chunk for s in run.submissions for jid, chunk in s.chunks()}
        live = [jid for s in run.submissions for jid, chunk in s.chunks() if any(latest.get(t) is s for t in chunk)]
        b = "@@" + secrets.token_hex(6)
        outs = shlex.quote(self.outputs_dir(run))
        cmd = (f"squeue -h -r -j {shlex.quote(','.join(live) or '0')} -o '%i|%T' 2>/dev/null; echo {b} squeue $?; "
               f"cd {outs} 2>/dev/null && for f in */exit; do [ -f \"$f\" ] || continue; d=${{f%/exit}}; "
               f"echo {b} exit $d $(head -c 40 \"$f\"); "
               f"if [ \"$(head -c 40 \"$f\")\" != 0 ]; then tail -c {STDERR_TAIL} \"$d/stderr.log\" 2>/dev/null; fi; done; true")
        _, out, _ = self.run(cmd)
        sections = parse_sections(out, b)
        queue: dict[int, str] = {}
        for line in sections.get("", "").splitlines():
            jid_idx, _, state = line.partition("|")
            jid, _, idx = jid_idx.partition("_")
            if jid in jobs and idx.isdigit() and int(idx) < len(jobs[jid]):
                queue[jobs[jid][int(idx)]] = state.strip()
        # squeue failing (a busy controller) says nothing about the tasks: they are not failed
        squeue_ok = any(k.split()[:2] == ["squeue", "0"] for k in sections)
        finished: dict[int, TaskStatus] = {}
        for key, body in sections.items():
            f = key.split()
            if len(f) >= 2 and f[0] == "exit" and f[1].isdigit():
                st = state_from_exit(int(f[1]), " ".join(f[2:]), body)
                if st is not None:
                    finished[int(f[1])] = st
        result = {}
        for task in latest:
            if task in queue:  # still known to the scheduler (perhaps COMPLETING after its exit file)
                result[task] = TaskStatus(task, RUNNING if queue[task] in _RUNNING else PENDING, None, queue[task].lower())
            elif task in finished:
                result[task] = finished[task]
            elif not squeue_ok:
                result[task] = TaskStatus(task, PENDING, None, "squeue did not answer; asking again")
            else:
                result[task] = TaskStatus(task, FAILED, None, "the array task ended without an exit code "
                                          "(cancelled, walltime, node failure); see its log under logs/")
        return result

    def fetch(self, run: "FanoutRun", tasks: list[int]) -> None:
        from pathlib import Path

        if not tasks:
            return
        # One tar of the task directories, written there and read over SFTP (prefetched): an
        # exec channel's exit status can arrive before the last of a large stdout.
        outs = self.outputs_dir(run)
        archive = f"{run.remote_dir}/fetch-{secrets.token_hex(4)}.tar"
        names = " ".join(shlex.quote(task_dir_name(t)) for t in tasks)
        rc, _, err = self.run(f"cd {shlex.quote(outs)} && umask 077 && tar -cf {shlex.quote(archive)} "
                              f"--ignore-failed-read -- {names} 2>/dev/null; test -s {shlex.quote(archive)}", timeout=600)
        try:
            data = self.backend.conn.read_file(archive) if rc == 0 else None
        finally:
            self.run(f"rm -f -- {shlex.quote(archive)}")
        if not data:
            raise BackendError(f"{self.resource.name}: cannot read the outputs of run {run.run_id}: {err.strip()[-300:]}")
        extract_tar(data, Path(run.output))

    def cancel(self, run: "FanoutRun") -> None:
        ids = [jid for s in run.submissions for jid in s.job_ids]
        if ids:
            self.run("scancel " + " ".join(shlex.quote(i) for i in ids))

    def close(self) -> None:
        self.backend.close()


def _latest_submission_of(run: "FanoutRun") -> dict[int, Submission]:
    """task -> the submission that last ran it."""
    latest: dict[int, Submission] = {}
    for s in run.submissions:
        for t in s.tasks:
            latest[t] = s
    return latest


__all__ = ["SlurmEngine", "array_spec", "render_array_script", "DONE", "FAILED"]
