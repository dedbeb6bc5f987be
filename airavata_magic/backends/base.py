"""The one interface every runtime backend implements (local, slurm, ssh, kubernetes).

A backend knows how to start a Jupyter kernel somewhere and how to make its five ports reachable
from this process. It does not relay messages (``relay.py`` does) and does not own runtime state
(``manager.RuntimeManager`` does: it calls the backend and saves what the backend reports).

The manager creates one backend instance per resource and reuses it for every runtime on that
resource, so a backend may keep one SSH connection or API client open and share it.

Heavy imports (paramiko, kubernetes) belong inside methods, so that validating a profile that
mentions a kind does not pay for its client library.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from ..runtime import Observation, Runtime

# A validator takes the raw YAML value and returns the cleaned value or raises ValueError /
# InvalidArgument with a message that fits after "key 'k': ".
Validator = Callable[[Any], Any]

# Connection info in the Jupyter connection-file format (ip, transport, shell_port, iopub_port,
# stdin_port, control_port, hb_port, key, signature_scheme), with ip/ports reachable from here.
ConnectionInfo = dict[str, Any]


@dataclass
class Resource:
    """One entry of the profile's ``resources:`` section, validated."""

    name: str
    kind: str
    settings: dict[str, Any]  # validated keys of this kind, without `kind`
    source: str = "<built-in>"  # file:line it came from, for messages


@dataclass
class AuthResult:
    """One row of ``%authenticate``: is this resource usable, and if not, how to fix it."""

    resource: str
    kind: str
    ok: bool
    detail: str


class Backend(abc.ABC):
    """Starts kernels on one resource. Subclasses: one module each under ``backends/``."""

    #: the profile's ``kind:`` value this backend serves
    kind: ClassVar[str]
    #: profile keys this kind accepts (besides ``kind``), each with its validator
    profile_keys: ClassVar[dict[str, Validator]] = {}
    #: profile keys that must be present
    required_keys: ClassVar[tuple[str, ...]] = ()
    #: seconds between status queries while waiting; backends with a scheduler back off further
    poll_interval: ClassVar[float] = 0.5

    def __init__(self, resource: Resource, runtime_dir: Callable[[str], Any]) -> None:
        """``runtime_dir(name)`` gives the private local directory for a runtime's files."""
        self.resource = resource
        self.runtime_dir = runtime_dir

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    def request(self, runtime: Runtime) -> None:
        """Submit the runtime and return at once.

        Sets ``runtime.job_id`` (job id, pod name, pid) and ``runtime.state`` (usually REQUESTED
        or QUEUED), and whatever ``runtime.backend_state`` it needs to find the runtime again.
        Raises ``BackendError`` with the scheduler's message when the submission is refused.
        """

    @abc.abstractmethod
    def observe(self, runtimes: list[Runtime]) -> dict[str, Observation]:
        """Current state of several runtimes of this resource, in as few queries as possible.

        Keyed by runtime name. STARTING means allocated but the kernel may not answer yet; the
        manager promotes to READY itself once ``kernel_info`` is answered. A runtime the
        scheduler no longer knows is FAILED/EXPIRED/STOPPED with a reason, never silently dropped.
        """

    @abc.abstractmethod
    def connection(self, runtime: Runtime) -> ConnectionInfo | None:
        """Connection info reachable from this process (tunnels opened as needed), or None if the
        kernel has not written it yet. Called again after a restart or a dropped tunnel."""

    def interrupt(self, runtime: Runtime, send_interrupt_request: Callable[[], None]) -> None:
        """Interrupt the running cell. Default: the kernel's own ``interrupt_request`` on the
        control channel, which ipykernel answers by signalling its process group."""
        send_interrupt_request()

    @abc.abstractmethod
    def restart(self, runtime: Runtime) -> None:
        """Start a fresh kernel in the same allocation; ``connection()`` then returns its info."""

    @abc.abstractmethod
    def stop(self, runtime: Runtime) -> None:
        """Stop the kernel and release the allocation (scancel, delete pod), close its tunnels.
        Must succeed (quietly) when the runtime is already gone."""

    @abc.abstractmethod
    def authenticate(self) -> AuthResult:
        """Check credentials for real (SSH handshake + ``true``, SelfSubjectAccessReview)."""

    # -- optional ------------------------------------------------------------------------
    def estimate_start(self, runtime: Runtime) -> float | None:
        """Seconds until this runtime would start if submitted now (``--use``), None if unknown.
        Raises ``BackendError`` when it could never start here."""
        return 0.0

    def estimate_reason(self, runtime: Runtime) -> str:
        """A short "why" for the last ``estimate_start`` (e.g. sbatch --test-only's answer)."""
        return ""

    def kernel_alive(self, runtime: Runtime) -> bool | None:
        """A cheap local liveness check (e.g. a pid), or None when only the heartbeat can tell."""
        return None

    def close(self) -> None:
        """Release connections held by this backend (not the runtimes themselves)."""
