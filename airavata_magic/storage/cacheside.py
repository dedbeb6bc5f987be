"""Where a runtime's dataset cache lives and how an entry is made there: this machine (local
runtimes), the resource's SSH host (its ``work_dir/datasets``), or a Kubernetes pod (through its
kernel). ``fetch.py`` (with ``archive.py``) finishes each entry there, by that side's own Python.
"""
from __future__ import annotations

import importlib.resources
import json
import os
import shlex
import subprocess
import sys
from typing import Any

from .. import paths
from ..errors import AiravataError
from .ends import End


def _fetch_source() -> str:
    pkg = importlib.resources.files("airavata_magic.storage")
    return (pkg / "archive.py").read_text() + "\n" + (pkg / "fetch.py").read_text()


class Side:
    """Where a runtime's datasets are cached: this machine (local runtimes) or its SSH host."""

    def __init__(self, end: End | None, python: str, cache: str) -> None:
        self.end, self.python, self.cache = end, python, cache

    def exists(self, path: str) -> bool:
        if self.end is None:
            return os.path.isfile(path)
        return self.end.run(f"test -f {shlex.quote(path)}")[0] == 0

    def mktemp(self, key: str) -> str:
        if self.end is None:
            import tempfile

            os.makedirs(self.cache, mode=0o700, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{key}.", dir=self.cache)
            os.makedirs(os.path.join(tmp, "data"))
            return tmp
        q = shlex.quote(self.cache)
        out = self.end.check(f"umask 077 && mkdir -p -- {q} && t=$(mktemp -d {q}/.{key}.XXXXXX) && mkdir -- \"$t/data\" && "
                             "echo \"$t\"", "mktemp")
        return out.strip().splitlines()[-1]

    def remove(self, path: str) -> None:
        if self.end is None:
            subprocess.run(["sh", "-c", 'chmod -R u+w -- "$1"; rm -rf -- "$1"', "sh", path], capture_output=True)
        else:
            q = shlex.quote(path)
            self.end.run(f"chmod -R u+w -- {q}; rm -rf -- {q}")

    def fetch(self, args: dict[str, Any]) -> str:
        source, arg = _fetch_source(), json.dumps(args)
        if self.end is None:
            p = subprocess.run([sys.executable, "-", arg], input=source, capture_output=True, text=True, timeout=3600)
            rc, out, err = p.returncode, p.stdout, p.stderr
        else:
            rc, out, err = _run_with_stdin(self.end, f"{shlex.quote(self.python)} - {shlex.quote(arg)}", source)
        if rc != 0:
            lines = [ln for ln in err.strip().splitlines() if ln.strip()]
            msg = lines[-1].removeprefix("error: ") if lines else f"exit status {rc}"
            raise AiravataError(f"preparing dataset {args.get('name')!r} failed: {msg}")
        return out.strip().splitlines()[-1]


class PodSide(Side):
    """A Kubernetes runtime: the cache lives in the pod, reached through its kernel (``kernelfiles``);
    ``fetch.py`` runs there in a private namespace of the kernel."""

    def __init__(self, manager: Any, runtime: str) -> None:
        from . import kernelfiles

        self.manager, self.runtime, self.kf = manager, runtime, kernelfiles
        home = kernelfiles.call(manager, runtime, "import os\nresult = os.path.expanduser('~')")
        super().__init__(None, "", f"{home}/.airavata-magic/datasets")

    def exists(self, path: str) -> bool:
        return self.kf.info(self.manager, self.runtime, path) is not None

    def mktemp(self, key: str) -> str:
        return self.kf.call(self.manager, self.runtime,
                            "import os, tempfile\nos.makedirs(args['cache'], mode=0o700, exist_ok=True)\n"
                            "result = tempfile.mkdtemp(prefix='.' + args['key'] + '.', dir=args['cache'])\n"
                            "os.makedirs(os.path.join(result, 'data'))", cache=self.cache, key=key)

    def remove(self, path: str) -> None:
        self.kf.call(self.manager, self.runtime, _fetch_source() + "\n_remove(args['path'])\nresult = True", path=path)

    def fetch(self, args: dict[str, Any]) -> str:
        try:
            return self.kf.call(self.manager, self.runtime, _fetch_source() + "\nresult = run(args['a'])", a=args)
        except AiravataError as e:
            raise AiravataError(f"preparing dataset {args.get('name')!r} failed: {str(e).split(': ', 1)[-1]}") from None

    def end_for(self, path: str, label: str) -> End:
        return End("kernel", path, label, runtime=self.runtime, manager=self.manager)


def _run_with_stdin(end: End, command: str, stdin: str) -> tuple[int, str, str]:
    from ..transport.ssh import connection_for

    return connection_for(end.loc.target()).run(command, stdin=stdin, timeout=3600)  # type: ignore[union-attr]


def side_of(runtime: str, manager: Any) -> Side:
    """The side that holds ``runtime``'s dataset cache."""
    from .. import profile as profiles
    from .ends import resource_end

    rt = manager.get(runtime)
    if rt.profile is None or rt.kind == "local":
        return local_side()
    res = profiles.load_profile(rt.profile).resource(rt.resource)
    if res.kind not in ("slurm", "ssh"):
        return PodSide(manager, runtime)
    work = res.settings.get("work_dir", "~/.airavata-magic")
    end = resource_end(rt.profile, res.name, work, f"{runtime}:{work}")
    return Side(end, res.settings.get("python") or "python3", f"{end.path}/datasets")


def local_side() -> Side:
    """This machine's dataset cache (local runtimes and the notebook's own jobs)."""
    return Side(None, sys.executable, str(paths.home() / "dataset-cache"))
