"""The runtime model: what a user asked for, where it runs, and what state it is in.

A ``Runtime`` is one kernel the user requested by name. Its record is kept on disk per user
(``runtime.store.RuntimeStore``) so that ``%attach_runtime`` works after the notebook kernel
restarts and ``%runtimes`` shows runtimes requested from other notebooks too. Only the
``RuntimeManager`` changes a record; backends report ``Observation``s and ``Submission``s.
"""
from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field
from typing import Any

from .. import checks
from ..errors import InvalidArgument

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
        """True for states that never change again."""
        return self in _TERMINAL


_TERMINAL = {RuntimeState.DEAD, RuntimeState.STOPPED, RuntimeState.FAILED, RuntimeState.EXPIRED}


def validate_name(name: str) -> str:
    """A runtime name: 1-64 printable characters without whitespace, '/', '\\' or ','."""
    return checks.runtime_name(name)


parse_memory = checks.memory_mb  # memory in MB from 512M, 8G, 1.5T or a number of MB


# Keys a preset in `runtimes:` and flags of %request_runtime may set, with their validators.
SPEC_FIELDS: dict[str, checks.Check] = {
    "cpus": lambda v: checks.whole_number(v, "cpus", 1, 4096),
    "gpus": lambda v: checks.whole_number(v, "gpus", 0, 64),
    "memory": checks.memory_mb,
    "walltime": lambda v: checks.whole_number(v, "walltime (minutes)", 1, 60 * 24 * 365),
    "partition": lambda v: checks.text(v, "partition"),
    "account": lambda v: checks.text(v, "account"),
    "image": lambda v: checks.text(v, "image"),
    "node": lambda v: checks.text(v, "node"),
    "setup": lambda v: _setup_lines(v),
}


def _setup_lines(value: Any) -> list[str]:
    """A preset's setup: shell lines run in the job after the resource's own (one line each)."""
    lines = [value] if isinstance(value, str) else value
    if not isinstance(lines, list) or not all(isinstance(v, str) and v.strip() for v in lines) \
            or any(c in v for v in lines for c in "\n\r\x00"):
        raise InvalidArgument(f"invalid setup {value!r}: expected a list of one-line shell commands")
    return list(lines)


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
    profile: str | None = None  # the profile file that defined `resource` (None: built-in local)
    preset: str | None = None  # the `runtimes:` preset it came from, if any
    #: when this process first saw no notebook holding the runtime (idle culling); None: held
    unheld_since: float | None = None
    # Backend-private facts needed to reach the runtime again after a restart of the notebook
    # kernel (remote paths, pod name, pid). Never secrets: keys stay in connection files.
    backend_state: dict[str, Any] = field(default_factory=dict)

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds of walltime left, or None when unlimited/unknown."""
        if self.ends_at is None:
            return None
        return max(0.0, self.ends_at - (now or time.time()))

    def to_json(self) -> dict[str, Any]:
        """The record as saved on disk."""
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Runtime":
        """Read a record; keys of older versions (``owner_pid``) are ignored."""
        d = dict(d)
        d["spec"] = RuntimeSpec(**d.get("spec", {}))
        d["state"] = RuntimeState(d["state"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
