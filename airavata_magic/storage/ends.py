"""The two sides of a copy: ``local:PATH``, ``STORAGE:PATH`` or ``RUNTIME:PATH``, resolved.

An ``End`` says where bytes live: on this machine (``local``), behind an SSH login (``ssh``:
an sshfs filesystem for bulk bytes plus the pooled paramiko connection for commands), or in any
other fsspec filesystem (``fsspec``). ``RUNTIME:relative/path`` is relative to the runtime
kernel's working directory, which is asked of the kernel itself.
"""
from __future__ import annotations

import ast
import hashlib
import os
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AiravataError, InvalidArgument
from .locations import Location, ssh_of_resource, all_locations, get as get_location, location_filesystem


@dataclass
class End:
    """One side of a transfer."""

    kind: str  # local | ssh | fsspec
    path: str  # absolute within its filesystem
    label: str  # as the user wrote it, for messages
    fs: Any = None  # fsspec filesystem (ssh: sshfs)
    loc: Location | None = None  # the SSH login behind an ssh end
    runtime: str | None = None  # kernel ends: the runtime whose kernel reaches the files
    manager: Any = None  # kernel ends: the RuntimeManager holding its link

    def join(self, rel: str) -> str:
        if not rel:
            return self.path
        return os.path.join(self.path, rel) if self.kind == "local" else posixpath.join(self.path, rel)

    def same_host(self, other: "End") -> bool:
        if self.kind == "local" and other.kind == "local":
            return True
        if self.kind == "ssh" and other.kind == "ssh" and self.loc and other.loc and self.loc.ssh and other.loc.ssh:
            a, b = self.loc.ssh, other.loc.ssh
            # behind a bastion a host name means what the bastion resolves it to
            return (a["host"], a["port"], a.get("user"), a.get("proxy_jump")) == \
                (b["host"], b["port"], b.get("user"), b.get("proxy_jump"))
        return False

    # -- commands (ssh ends) -----------------------------------------------------------------
    def run(self, command: str, timeout: float = 600) -> tuple[int, str, str]:
        """A shell command (already quoted) on the SSH host, over the resource's pooled connection."""
        from ..transport.ssh import connection_for

        if self.loc is None:
            raise AiravataError(f"{self.label} is not on an SSH host")
        return connection_for(self.loc.target()).run(command, timeout=timeout)

    def check(self, command: str, what: str, timeout: float = 600) -> str:
        rc, out, err = self.run(command, timeout)
        if rc != 0:
            lines = (err or out).strip().splitlines()
            raise AiravataError(f"{what} failed on {self.label}: {lines[-1] if lines else f'exit status {rc}'}")
        return out

    # -- queries --------------------------------------------------------------------------------
    def info(self, path: str | None = None) -> dict[str, Any] | None:
        """{type, size, mtime, mode} of a path, or None when it does not exist."""
        p = path or self.path
        if self.kind == "kernel":
            from . import kernelfiles

            return kernelfiles.info(self.manager, self.runtime or "", p)
        if self.kind == "local":
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                return None
            import stat

            kind = "link" if stat.S_ISLNK(st.st_mode) else "directory" if stat.S_ISDIR(st.st_mode) else "file"
            return {"type": kind, "size": st.st_size, "mtime": st.st_mtime, "mode": st.st_mode & 0o7777}
        try:
            i = self.fs.info(p)
        except FileNotFoundError:
            return None
        mtime = i.get("mtime")
        if hasattr(mtime, "timestamp"):
            mtime = mtime.timestamp()
        perm = i.get("permissions")
        return {"type": i.get("type", "file"), "size": i.get("size") or 0, "mtime": mtime,
                "mode": (perm & 0o7777) if isinstance(perm, int) else None}

    def fingerprint(self) -> str | None:
        """Size and mtime of a file, or of every file of a tree (count, bytes, newest mtime): what
        tells a changed source from the one cached. None when the path does not exist."""
        info = self.info()
        if info is None:
            return None
        if info["type"] != "directory":
            return f"file:{info['size']}:{info['mtime']}"
        if self.kind == "ssh":
            out = self.check(f"find {shlex.quote(self.path)} -printf '%s %T@\\n'", "find")
            rows = [line.split() for line in out.splitlines() if line.strip()]
            stats = [(int(a), float(b)) for a, b in rows]
        elif self.kind == "local":
            stats = []
            for dirpath, dirnames, filenames in os.walk(self.path):
                for n in dirnames + filenames:
                    st = os.lstat(os.path.join(dirpath, n))
                    stats.append((st.st_size, st.st_mtime))
        elif self.kind == "kernel":
            from . import kernelfiles

            stats = [(int(a), float(b)) for a, b in kernelfiles.tree_stats(self.manager, self.runtime or "", self.path)]
        else:
            found = self.fs.find(self.path, detail=True).values()
            stats = [(int(i.get("size") or 0), float(getattr(i.get("mtime"), "timestamp", lambda: 0)())) for i in found]
        return f"tree:{len(stats)}:{sum(s for s, _ in stats)}:{max((m for _, m in stats), default=0)}"

    def sha256(self, path: str, limit: int | None = None) -> str:
        """sha256 of a file (its first ``limit`` bytes if given). SSH hosts compute it there, by a
        remote command: no byte is downloaded to check it."""
        if self.kind == "kernel":
            from . import kernelfiles

            return kernelfiles.sha256(self.manager, self.runtime or "", path, limit)
        if self.kind == "ssh":
            q = shlex.quote(path)
            cmd = f"head -c {int(limit)} < {q} | sha256sum" if limit is not None else f"sha256sum < {q}"
            return self.check(cmd, "sha256sum").split()[0]
        h = hashlib.sha256()
        left = limit if limit is not None else -1
        opener = open(path, "rb") if self.kind == "local" else self.fs.open(path, "rb")
        with opener as f:
            while left != 0:
                chunk = f.read(1 << 20 if left < 0 else min(1 << 20, left))
                if not chunk:
                    break
                h.update(chunk)
                if left > 0:
                    left -= len(chunk)
        return h.hexdigest()

    def manifest(self) -> dict[str, str]:
        """{relative path: sha256} of every regular file under a directory."""
        if self.kind == "kernel":
            from . import kernelfiles

            return kernelfiles.manifest(self.manager, self.runtime or "", self.path)
        if self.kind == "ssh":
            out = self.check(f"cd -- {shlex.quote(self.path)} && find . -type f -print0 | xargs -0 -r sha256sum -z",
                             "sha256sum")
            res = {}
            for rec in out.split("\0"):
                if rec:
                    digest, _, name = rec.partition("  ")
                    res[os.path.normpath(name)] = digest
            return res
        res = {}
        files = (self._local_files() if self.kind == "local"
                 else [posixpath.relpath(p, self.path) for p in self.fs.find(self.path)])
        for rel in files:
            res[os.path.normpath(rel)] = self.sha256(self.join(rel))
        return res

    def _local_files(self) -> list[str]:
        out = []
        for dirpath, _, names in os.walk(self.path):
            for n in names:
                p = os.path.join(dirpath, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    out.append(os.path.relpath(p, self.path))
        return out


def _inside(root: str, sub: str, sep_mod: Any) -> str:
    """``root/sub`` after normalising, refusing a ``sub`` that climbs out of ``root``."""
    if not sub:
        return root
    joined = sep_mod.normpath(sep_mod.join(root, sub))
    if sub.startswith("/") or not (joined == root or joined.startswith(root.rstrip("/") + "/")):
        raise InvalidArgument(f"path {sub!r} leaves its storage location; give a path inside it")
    return joined


def runtime_cwd(manager: Any, name: str) -> str:
    """The working directory of a runtime's kernel, asked of the kernel."""
    from .variables import QuietSink

    outcomes = manager.run([name], "", QuietSink(), allow_stdin=False, silent=True,
                           user_expressions={"cwd": "__import__('os').getcwd()"})
    value = outcomes[0].user_expressions.get("cwd", {})
    if value.get("status") != "ok":
        raise AiravataError(f"runtime {name!r} did not say its working directory: {value.get('evalue', value)}")
    return ast.literal_eval(value["data"]["text/plain"])


def runtime_end(manager: Any, name: str, path: str, label: str) -> End:
    """The End for ``RUNTIME:PATH`` (files on the runtime's resource, as its kernel sees them)."""
    from .. import profile as profiles

    rt = manager.get(name)
    if rt.profile is None or rt.kind == "local":
        base = runtime_cwd(manager, name) if not os.path.isabs(path) else ""
        return End("local", str(Path(base, path).resolve()) if base else os.path.normpath(path), label)
    res = profiles.load_profile(rt.profile).resource(rt.resource)
    if res.kind not in ("slurm", "ssh"):  # a pod: its files are reached through its kernel
        from . import kernelfiles

        if not posixpath.isabs(path):
            path = posixpath.normpath(posixpath.join(kernelfiles.cwd(manager, name), path))
        return End("kernel", path, label, runtime=name, manager=manager)
    if not posixpath.isabs(path) and not path.startswith("~"):
        path = posixpath.join(runtime_cwd(manager, name), path)
    return resource_end(rt.profile, res.name, path, label)


def resource_end(profile_path: str | None, resource: str, path: str, label: str) -> End:
    """An End for ``path`` (absolute or ``~/...``) on an ssh/slurm resource of a profile."""
    from .. import profile as profiles

    prof = profiles.load_profile(profile_path)
    loc = Location(resource, "resource", label, "runtime", path, "sftp", resource, ssh_of_resource(prof, resource))
    fs, p = location_filesystem(loc)
    return End("ssh", p, label, fs, loc)


def is_claim(spec: str, file: str | None = None) -> bool:
    """Whether ``spec`` names a path in a Kubernetes claim (``STORAGE:PATH`` of kind claim)."""
    name, sep, _ = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or "/" in name or name in ("", ".", "..", "local"):
        return False
    try:
        return get_location(name, file).kind == "claim"
    except InvalidArgument:
        return False


def resolve_pair(src: str, dst: str, *, file: str | None = None, manager: Any = None) -> tuple[End, End]:
    """Both ends of a copy. A claim side is resolved last, on the other side's pod when that pod
    mounts the claim, so that the copy runs inside it."""
    if is_claim(src, file):
        d = resolve(dst, file=file, manager=manager)
        return resolve(src, file=file, manager=manager, prefer=d.runtime), d
    s = resolve(src, file=file, manager=manager)
    return s, resolve(dst, file=file, manager=manager, prefer=s.runtime)


def resolve(spec: str, *, file: str | None = None, manager: Any = None, prefer: str | None = None) -> End:
    """``local:PATH`` | ``STORAGE:PATH`` | ``RUNTIME:PATH`` -> End. A plain path is local.
    ``prefer``: for a claim, the runtime to reach it through when that runtime's pod mounts it."""
    if not isinstance(spec, str) or not spec or "\x00" in spec or "\n" in spec:
        raise InvalidArgument(f"bad copy endpoint {spec!r}: write local:PATH, STORAGE:PATH or RUNTIME:PATH")
    name, sep, path = spec.partition(":")
    if not sep or "/" in name or name in (".", ".."):
        return End("local", str(Path(spec).expanduser().resolve()), spec)
    if name == "local":
        if not path:
            raise InvalidArgument("local: needs a path, e.g. local:data/file.csv")
        return End("local", str(Path(path).expanduser().resolve()), spec)
    try:
        loc = get_location(name, file)
    except InvalidArgument:
        loc = None
    if loc is not None and loc.kind == "claim":
        from .claims import claim_end

        return claim_end(loc, path, spec, manager, prefer)
    if loc is not None:
        fs, root = location_filesystem(loc)
        if loc.kind == "local":
            return End("local", _inside(root, path, os.path), spec)
        if loc.kind in ("sftp", "resource"):
            return End("ssh", _inside(root, path, posixpath), spec, fs, loc)
        return End("fsspec", _inside(root.rstrip("/"), path, posixpath), spec, fs, loc)
    if manager is None:
        from .. import get_manager

        manager = get_manager()
    try:
        manager.get(name)
    except AiravataError:
        known = sorted(loc.name for loc in all_locations(file))
        raise InvalidArgument(f"{name!r} in {spec!r} is neither a storage location nor a runtime "
                              f"(storage: {', '.join(known) or 'none'}; see %storage list and %runtimes)") from None
    return runtime_end(manager, name, path or ".", spec)
