"""The runtime model: what a user asked for, where it runs, and what state it is in.

A ``Runtime`` is one remote kernel the user requested by name. Its record is kept on disk per
user (``RuntimeStore``) so that ``%attach_runtime`` works after the notebook kernel restarts and
``%runtimes`` shows runtimes requested from other notebooks too.
"""
from __future__ import annotations

import dataclasses
import enum
import os
import re
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import paths
from .errors import InvalidArgument, RuntimeNotFound

LOCAL = "local"  # the notebook's own kernel as a runtime name, and the embedded resource's name


class RuntimeState(str, enum.Enum):
    """Explicit runtime states. Terminal states never change again."""

    REQUESTED = "requested"  # accepted by us, not yet seen by the scheduler
    QUEUED = "queued"  # waiting in the scheduler (Slurm PENDING, pod Pending)
    STARTING = "starting"  # allocated and running, kernel not yet answering
    READY = "ready"  # kernel answered kernel_info
    DEAD = "dead"  # kernel stopped answering (heartbeat) or its process ended
    STOPPED = "stopped"  # stopped by the user
    FAILED = "failed"  # could not be scheduled or started; `reason` says why
    EXPIRED = "expired"  # walltime reached

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {RuntimeState.DEAD, RuntimeState.STOPPED, RuntimeState.FAILED, RuntimeState.EXPIRED}

_NAME_RE = re.compile(r"^[^\s/\\,\x00-\x1f\x7f]{1,64}$")


def validate_name(name: str) -> str:
    """A runtime name: 1-64 printable characters without whitespace, '/', '\\' or ','."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name[0] in "-.":
        raise InvalidArgument(
            f"invalid runtime name {name!r}: use 1-64 characters without spaces, '/', '\\' or ',', "
            "not starting with '-' or '.'"
        )
    return name


_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_memory(value: Any) -> int:
    """Memory in MB from ``512M``, ``8G``, ``1.5T`` or a bare number of MB."""
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid memory {value!r}: use e.g. 512M, 8G, or a number of MB")
    if isinstance(value, (int, float)):
        mb = float(value)
    else:
        m = _MEM_RE.match(str(value))
        if not m:
            raise InvalidArgument(f"invalid memory {value!r}: use e.g. 512M, 8G, or a number of MB")
        mb = float(m.group(1)) * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    if mb < 1 or mb > 1024**3:
        raise InvalidArgument(f"invalid memory {value!r}: must be between 1M and 1024T")
    return int(round(mb))


def _positive_int(what: str, value: Any, minimum: int = 1, maximum: int = 10**6) -> int:
    if isinstance(value, bool):
        raise InvalidArgument(f"invalid {what} {value!r}: expected a whole number")
    try:
        n = int(value)
        if isinstance(value, float) and n != value:
            raise ValueError
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError
    except (TypeError, ValueError):
        raise InvalidArgument(f"invalid {what} {value!r}: expected a whole number") from None
    if not minimum <= n <= maximum:
        raise InvalidArgument(f"invalid {what} {value!r}: must be between {minimum} and {maximum}")
    return n


def _text(what: str, value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidArgument(f"invalid {what} {value!r}: expected text")
    s = str(value)
    if not s or len(s) > 256 or any(ord(c) < 32 or c == "\x7f" for c in s):
        raise InvalidArgument(f"invalid {what} {value!r}: 1-256 printable characters")
    return s


def _setup_lines(value: Any) -> list[str]:
    """Shell lines run in the job before the kernel, after the resource's own (one line each)."""
    lines = [value] if isinstance(value, str) else value
    if not isinstance(lines, list) or not all(isinstance(v, str) and v.strip() for v in lines) \
            or any(c in v for v in lines for c in "\n\r\x00"):
        raise InvalidArgument(f"invalid setup {value!r}: expected a list of one-line shell commands")
    return list(lines)


# Keys a preset in `runtimes:` and flags of %request_runtime may set, with their validators.
SPEC_FIELDS: dict[str, Any] = {
    "cpus": lambda v: _positive_int("cpus", v, 1, 4096),
    "gpus": lambda v: _positive_int("gpus", v, 0, 64),
    "memory": parse_memory,
    "walltime": lambda v: _positive_int("walltime (minutes)", v, 1, 60 * 24 * 365),
    "partition": lambda v: _text("partition", v),
    "account": lambda v: _text("account", v),
    "image": lambda v: _text("image", v),
    "node": lambda v: _text("node", v),
    "setup": _setup_lines,
}


@dataclass
class RuntimeSpec:
    """The resources asked for. ``None`` means the resource's or scheduler's default."""

    cpus: int | None = None
    gpus: int | None = None
    memory: int | None = None  # MB
    walltime: int | None = None  # minutes
    partition: str | None = None
    account: str | None = None
    image: str | None = None
    node: str | None = None
    setup: list[str] | None = None  # a preset's setup lines (e.g. from %application add)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "RuntimeSpec":
        """Validate and build; unknown keys raise ``InvalidArgument``."""
        spec = cls()
        for key, value in values.items():
            if key not in SPEC_FIELDS:
                raise InvalidArgument(f"unknown runtime setting {key!r}; known: {', '.join(SPEC_FIELDS)}")
            if value is not None:
                setattr(spec, key, SPEC_FIELDS[key](value))
        return spec

    def merged(self, overrides: "RuntimeSpec") -> "RuntimeSpec":
        """This spec with every non-None field of ``overrides`` applied."""
        out = dataclasses.replace(self)
        for f in dataclasses.fields(self):
            v = getattr(overrides, f.name)
            if v is not None:
                setattr(out, f.name, v)
        return out


@dataclass
class Observation:
    """What a backend saw of one runtime in one status query."""

    state: RuntimeState
    reason: str = ""  # scheduler reason or event message, e.g. "Priority", "Insufficient nvidia.com/gpu"
    node: str | None = None
    log_tail: str = ""
    ends_at: float | None = None  # epoch seconds when the walltime ends, if known


@dataclass
class Runtime:
    """One requested runtime. Persisted as JSON by ``RuntimeStore``; only the manager mutates it."""

    name: str
    resource: str
    kind: str
    spec: RuntimeSpec = field(default_factory=RuntimeSpec)
    state: RuntimeState = RuntimeState.REQUESTED
    job_id: str | None = None
    node: str | None = None
    reason: str = ""
    created_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    ends_at: float | None = None
    owner_pid: int = field(default_factory=os.getpid)
    profile: str | None = None  # the profile file that defined `resource` (None: built-in local)
    preset: str | None = None  # the `runtimes:` preset it came from, if any
    # Backend-private facts needed to reach the runtime again after a restart of the notebook
    # kernel (remote paths, pod name, pid). Never secrets: keys stay in connection files.
    backend_state: dict[str, Any] = field(default_factory=dict)

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds of walltime left, or None when unlimited/unknown."""
        if self.ends_at is None:
            return None
        return max(0.0, self.ends_at - (now or time.time()))

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Runtime":
        d = dict(d)
        d["spec"] = RuntimeSpec(**d.get("spec", {}))
        d["state"] = RuntimeState(d["state"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _file_stem(name: str) -> str:
    return urllib.parse.quote(name, safe="-_.")


class RuntimeStore:
    """The on-disk registry of this user's runtimes: ``$AIRAVATA_MAGIC_HOME/runtimes/``.

    One JSON record per runtime plus a private directory per runtime (connection files, logs).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = paths.private_dir((root or paths.home()) / "runtimes")

    def record_path(self, name: str) -> Path:
        return self.root / f"{_file_stem(name)}.json"

    def runtime_dir(self, name: str) -> Path:
        """Private (0700) directory for one runtime's local files."""
        return paths.private_dir(self.root / f"{_file_stem(name)}.d")

    def save(self, runtime: Runtime) -> None:
        paths.write_json(self.record_path(runtime.name), runtime.to_json())

    def load(self, name: str) -> Runtime:
        try:
            return Runtime.from_json(paths.read_json(self.record_path(name)))
        except FileNotFoundError:
            raise RuntimeNotFound(f"no runtime named {name!r}; %runtimes lists them") from None
        except (ValueError, TypeError, KeyError) as e:
            raise RuntimeNotFound(f"the record of runtime {name!r} is unreadable ({e}); stop it with --all") from None

    def exists(self, name: str) -> bool:
        return self.record_path(name).exists()

    def all(self) -> Iterator[Runtime]:
        for p in sorted(self.root.glob("*.json")):
            try:
                yield Runtime.from_json(paths.read_json(p))
            except (OSError, ValueError, TypeError, KeyError):
                continue

    def forget(self, name: str) -> None:
        """Remove a runtime's record and its private directory."""
        import shutil

        self.record_path(name).unlink(missing_ok=True)
        shutil.rmtree(self.root / f"{_file_stem(name)}.d", ignore_errors=True)
