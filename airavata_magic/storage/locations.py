"""Named storage locations: the profile's ``storage:`` plus a per-user list, resolved to fsspec.

A location is written as one of:

- a local path (``/srv/lab``, ``~/data``, ``file:///srv/lab``);
- ``sftp://user@host[:port]/path``: the SSH settings (key, known_hosts, proxy_jump) of a profile
  resource on that host and user are reused when there is one;
- ``RESOURCE:/path``: a path on a profile resource's cluster, through its SSH settings
  (``local`` resources give a local path; on a Kubernetes resource, a path inside the
  PersistentVolumeClaim its ``storage_claim`` names, reached through a pod: ``claims.py``);
- any other URL an installed fsspec filesystem understands (``s3://``, ``gs://``, ``memory://``).

``filesystem(name)`` is the one place that turns a name into ``(fsspec filesystem, root path)``;
copies, datasets and other features build on it. Host keys are always checked against the
``known_hosts`` file of the resource (or ``~/.ssh/known_hosts``), never turned off.

A resource with ``proxy_jump: [user@]host[:port]`` is reached through that bastion, logging in to
it with the resource's own key and ``known_hosts``: commands go through the pooled paramiko
connection (which jumps by itself), bulk bytes through one asyncssh connection to the bastion per
jump login, kept for the process and tunnelling every sshfs connection behind it.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .. import checks, paths
from ..errors import AiravataError, InvalidArgument
from .sshlogin import ssh_filesystem

if TYPE_CHECKING:
    import fsspec

    from ..profile import Profile
    from ..transport.target import SshTarget

_RES_PATH_RE = re.compile(r"^(?P<res>[A-Za-z0-9][A-Za-z0-9_.-]{0,62}):(?P<path>/.*|~.*)$")
_USER_FILE = "storage.json"

KINDS = ("local", "sftp", "resource", "claim", "fsspec")


@dataclass(frozen=True)
class Location:
    """One named location, resolved. ``root`` is the path inside its filesystem."""

    name: str
    kind: str  # local | sftp | resource | claim | fsspec
    location: str  # as the user wrote it
    source: str  # profile | user
    root: str
    protocol: str = "file"  # fsspec protocol
    resource: str | None = None  # the profile resource it belongs to, if any
    ssh: dict[str, Any] | None = None  # host, port, user, identity_file, known_hosts[, proxy_jump]
    claim: str | None = None  # claim: the PersistentVolumeClaim, mounted in the resource's pods at ``mount``
    mount: str | None = None
    profile: str | None = None  # claim: the profile file that defines ``resource``

    @property
    def writable(self) -> bool:
        """Whether this process may write there (local: checked now; remote: assumed)."""
        if self.kind == "local":
            p = Path(self.root)
            while not p.exists() and p != p.parent:
                p = p.parent
            return os.access(p, os.W_OK)
        return True

    def target(self) -> "SshTarget":
        """The SSH login of an sftp/resource location (the key of the shared paramiko pool)."""
        from ..transport.target import SshTarget

        if not self.ssh:
            raise InvalidArgument(f"storage {self.name!r} is not reached over SSH")
        return SshTarget(**{k: v for k, v in self.ssh.items() if v is not None})


def check_name(name: str) -> str:
    """A storage or dataset name: letters, digits, ``_ . -``; raises ``InvalidArgument``."""
    return checks.key_name(name, "name")


def _profile(file: str | None) -> "Profile":
    from ..profile import load_profile

    return load_profile(file)


def ssh_of_resource(profile: "Profile", resource: str) -> dict[str, Any]:
    """The SSH login settings of an ssh/slurm resource (host, port, user, key, known_hosts, and
    ``proxy_jump`` only when it has one, so that other logins keep their resume keys)."""
    s = profile.resources[resource].settings
    ssh = {"host": s["host"], "port": s.get("port", 22), "user": s.get("user"),
           "identity_file": s.get("identity_file"), "known_hosts": s.get("known_hosts", "~/.ssh/known_hosts")}
    if s.get("proxy_jump"):
        ssh["proxy_jump"] = s["proxy_jump"]
    return ssh


def parse(name: str, location: str, source: str = "user", profile: "Profile | None" = None) -> Location:
    """Resolve a written location to a ``Location``; raises ``InvalidArgument`` saying the forms."""
    if not isinstance(location, str) or not location.strip() or any(ord(c) < 32 for c in location):
        raise InvalidArgument(f"storage {name!r}: the location must be one line of text")
    loc = location.strip()
    if loc.startswith(("/", "~", "./", "../")) or loc.startswith("file://"):
        p = unquote(urlsplit(loc).path) if loc.startswith("file://") else loc
        return Location(name, "local", location, source, str(Path(p).expanduser().resolve()))
    m = None if "://" in loc else _RES_PATH_RE.match(loc)
    if m:
        profile = profile or _profile(None)
        res = m.group("res")
        if res not in profile.resources:
            raise InvalidArgument(f"storage {name!r}: {res!r} is not a resource of the profile "
                                  f"(known: {', '.join(sorted(profile.resources))})")
        kind = profile.resources[res].kind
        if kind == "local":
            return Location(name, "local", location, source, str(Path(m.group("path")).expanduser().resolve()), resource=res)
        if kind == "kubernetes":
            from .claims import claim_of

            try:
                claim, mount = claim_of(profile, res)
            except InvalidArgument as e:
                raise InvalidArgument(f"storage {name!r}: {e}") from None
            path = m.group("path")
            if not path.startswith("/"):
                raise InvalidArgument(f"storage {name!r}: a claim has no home directory; write {res}:/path "
                                      "(a path inside the claim)")
            return Location(name, "claim", location, source, posixpath.normpath(path), protocol="kernel",
                            resource=res, claim=claim, mount=mount, profile=str(profile.path) if profile.path else None)
        return Location(name, "resource", location, source, m.group("path"), protocol="sftp", resource=res,
                        ssh=ssh_of_resource(profile, res))
    if loc.startswith("sftp://") or loc.startswith("ssh://"):
        u = urlsplit(loc)
        if not u.hostname:
            raise InvalidArgument(f"storage {name!r}: write sftp://user@host[:port]/path, got {location!r}")
        try:
            port = u.port or 22
        except ValueError:
            raise InvalidArgument(f"storage {name!r}: bad port in {location!r}") from None
        import getpass

        user = unquote(u.username) if u.username else getpass.getuser()
        root = unquote(u.path) or "~"
        if root.startswith("/~"):
            root = root[1:]
        profile = profile or _profile(None)
        resource, ssh = None, {"host": u.hostname, "port": port, "user": user, "identity_file": None,
                               "known_hosts": "~/.ssh/known_hosts"}
        for r in profile.resources.values():  # reuse a resource's key and known_hosts on that host
            s = r.settings
            if r.kind in ("slurm", "ssh") and s.get("host") == u.hostname and s.get("port", 22) == port \
                    and (s.get("user") or user) == user:
                resource, ssh = r.name, ssh_of_resource(profile, r.name)
                break
        return Location(name, "sftp", location, source, root, protocol="sftp", resource=resource, ssh=ssh)
    if "://" in loc:
        from fsspec.registry import known_implementations, registry

        scheme = loc.split("://", 1)[0]
        if scheme not in known_implementations and scheme not in registry:
            raise InvalidArgument(f"storage {name!r}: no fsspec filesystem knows {scheme}:// "
                                  "(install its package, e.g. s3fs or gcsfs)")
        return Location(name, "fsspec", location, source, loc, protocol=scheme)
    raise InvalidArgument(f"storage {name!r}: cannot read location {location!r}; write a local path, "
                          "sftp://user@host/path, RESOURCE:/path or an fsspec URL such as s3://bucket/key")


# -- the registry ----------------------------------------------------------------------------
def _user_file() -> Path:
    return paths.home() / _USER_FILE


def _user_entries() -> dict[str, dict[str, str]]:
    f = _user_file()
    if not f.exists():
        return {}
    try:
        data = paths.read_json(f)
    except (OSError, ValueError) as e:
        raise AiravataError(f"cannot read {f}: {e}; fix or remove it") from None
    return data if isinstance(data, dict) else {}


def all_locations(file: str | None = None) -> list[Location]:
    """Every named location: the profile's ``storage:`` first, then the user's own list."""
    profile = _profile(file)
    out = [parse(n, body["location"], "profile", profile) for n, body in sorted(profile.storage.items())]
    seen = {loc.name for loc in out}
    for n, body in sorted(_user_entries().items()):
        if n not in seen:
            out.append(parse(n, body.get("location", ""), "user", profile))
    return out


def get(name: str, file: str | None = None) -> Location:
    """One named location; ``InvalidArgument`` lists the known names when there is none."""
    check_name(name)
    profile = _profile(file)
    if name in profile.storage:
        return parse(name, profile.storage[name]["location"], "profile", profile)
    user = _user_entries()
    if name in user:
        return parse(name, user[name].get("location", ""), "user", profile)
    known = sorted(set(profile.storage) | set(user))
    raise InvalidArgument(f"no storage named {name!r}; known: {', '.join(known) or 'none'} "
                          "(add one with `%storage register --name N --location L`)")


def register(name: str, location: str, file: str | None = None) -> Location:
    """Add (or replace) a location in the user's own list; the profile's names cannot be shadowed."""
    check_name(name)
    profile = _profile(file)
    if name in profile.storage:
        raise InvalidArgument(f"storage {name!r} is defined in the profile {profile.path}; choose another name")
    loc = parse(name, location, "user", profile)
    entries = _user_entries()
    entries[name] = {"location": location}
    paths.write_json(_user_file(), entries)
    return loc


def remove(name: str, file: str | None = None) -> None:
    """Remove a location from the user's own list (profile entries are edited in the profile)."""
    check_name(name)
    entries = _user_entries()
    if name not in entries:
        if name in _profile(file).storage:
            raise InvalidArgument(f"storage {name!r} comes from the profile; remove it there")
        raise InvalidArgument(f"no storage named {name!r} in your list")
    del entries[name]
    paths.write_json(_user_file(), entries)


# -- to fsspec -------------------------------------------------------------------------------
def expand_remote(loc: Location, path: str) -> str:
    """A remote path with ``~`` expanded through the location's pooled SSH connection."""
    if path == "~" or path.startswith("~/"):
        from ..transport.ssh import connection_for

        path = connection_for(loc.target()).home() + path[1:]
    return path.rstrip("/") or "/"


def filesystem(name: str, file: str | None = None) -> tuple["fsspec.AbstractFileSystem", str]:
    """Resolve a storage name to ``(fsspec filesystem, root path inside it)``.

    The public entry point for every feature that reads or writes named storage::

        fs, root = airavata_magic.storage.filesystem("scratch")
        with fs.open(f"{root}/data.csv") as f: ...

    Local paths give fsspec's local filesystem; ``sftp://`` and ``RESOURCE:/path`` give an sshfs
    (asyncssh) filesystem that verifies host keys from the resource's ``known_hosts``; other
    URLs go to the fsspec implementation of their scheme. Raises ``InvalidArgument`` (one line).
    """
    loc = get(name, file)
    return location_filesystem(loc)


def location_filesystem(loc: Location) -> tuple["fsspec.AbstractFileSystem", str]:
    """``filesystem()`` for an already resolved ``Location``."""
    import fsspec

    if loc.kind == "local":
        return fsspec.filesystem("file"), loc.root
    if loc.kind in ("sftp", "resource"):
        return ssh_filesystem(loc.ssh or {}), expand_remote(loc, loc.root)
    if loc.kind == "claim":
        raise InvalidArgument(f"storage {loc.name!r} is a Kubernetes claim, reached through a pod, not as a "
                              f"file system here: use %copy_data {loc.name}:PATH ..., %storage ls or %storage mount")
    try:
        fs, root = fsspec.core.url_to_fs(loc.root)
    except (ImportError, ValueError) as e:
        raise InvalidArgument(f"storage {loc.name!r}: {e}") from None
    return fs, root


def as_row(loc: Location) -> dict[str, Any]:
    """A table row: name, kind, location, writable, source."""
    return {"name": loc.name, "kind": loc.kind, "location": loc.location, "writable": loc.writable,
            "source": loc.source}


def to_json(loc: Location) -> dict[str, Any]:
    return asdict(loc)


__all__ = ["Location", "filesystem", "location_filesystem", "get", "register", "remove",
           "parse", "check_name", "ssh_filesystem", "all_locations"]
