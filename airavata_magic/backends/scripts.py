"""The scripts that start kernels over SSH, rendered as pure functions (unit-tested with golden files).

Every value that reaches a shell is quoted: ``#SBATCH`` values for sbatch's own parser, argv
elements with ``shlex.quote``. Profile ``setup:`` lines are shell code by design and kept as written.
"""
from __future__ import annotations

import importlib.resources
import re
import secrets
import string

from ..errors import InvalidArgument
from ..transport.target import quote_argv


def _template(name: str) -> string.Template:
    return string.Template((importlib.resources.files("airavata_magic.kernels") / name).read_text())


def sbatch_quote(value: str) -> str:
    """A value for an ``#SBATCH`` line: sbatch honours double quotes with backslash escapes
    (verified on Slurm 22.05: spaces, quotes, ``;``, ``#``, ``$(..)`` arrive intact)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def slurm_filename(path: str) -> str:
    """A path for ``--output``: ``%`` is Slurm's pattern character, ``%%`` a literal one."""
    return path.replace("%", "%%")


def sbatch_options(*, partition: str | None = None, account: str | None = None, walltime: int | None = None,
                   cpus: int | None = None, memory: int | None = None, gpus: int | None = None,
                   node: str | None = None) -> list[tuple[str, str]]:
    """The resource options of a job as (option, value) pairs, in a fixed order."""
    opts: list[tuple[str, str]] = []
    if partition:
        opts.append(("--partition", partition))
    if account:
        opts.append(("--account", account))
    if walltime:
        opts.append(("--time", str(int(walltime))))
    if cpus:
        opts.append(("--cpus-per-task", str(int(cpus))))
    if memory:
        opts.append(("--mem", f"{int(memory)}M"))
    if gpus:
        opts.append(("--gres", f"gpu:{int(gpus)}"))
    if node:
        opts.append(("--nodelist", node))
    return opts


def render_job_script(*, job_name: str, output: str, options: list[tuple[str, str]], setup: list[str],
                      command: list[str]) -> str:
    """The Slurm job script (``kernels/slurm_job.sh``). Every value is quoted: ``#SBATCH`` values
    for sbatch's parser, the command's argv for the shell. Setup lines are shell code by design
    (``module load ...``) and are kept as written, one per line. ``command`` is exec'd last."""
    for line in setup:
        if "\n" in line or "\r" in line:
            raise InvalidArgument("each setup entry must be one shell line")
    return _template("slurm_job.sh").substitute(
        job_name=sbatch_quote(job_name),
        output=sbatch_quote(slurm_filename(output)),
        directives="\n".join(f"#SBATCH {opt}={sbatch_quote(val)}" for opt, val in options) or "# (no resource options)",
        setup="\n".join(setup) or ":",
        command="exec " + quote_argv(command),
    )


def render_ssh_script(*, setup: list[str], command: list[str]) -> str:
    """The script that starts a kernel on a plain SSH host (``kernels/ssh_kernel.sh``)."""
    return _template("ssh_kernel.sh").substitute(
        setup="\n".join(setup) or ":", command="exec " + quote_argv(command),
    )


def launcher_source() -> bytes:
    return (importlib.resources.files("airavata_magic.kernels") / "remote_launcher.py").read_bytes()


def run_dir_name(runtime_name: str) -> str:
    """A directory name for a runtime: readable, safe in any shell, unique."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", runtime_name)[:40].lstrip(".-") or "runtime"
    return f"{safe}-{secrets.token_hex(4)}"


def parse_sections(text: str, boundary: str) -> dict[str, str]:
    """Split the output of a batched remote command into its ``<boundary> key`` sections."""
    out: dict[str, str] = {}
    key = ""
    buf: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.startswith(boundary + " "):
            out[key] = "".join(buf)
            key, buf = line[len(boundary) + 1:].strip(), []
        else:
            buf.append(line)
    out[key] = "".join(buf)
    return out
