"""The one interface every runtime backend implements (local process, slurm, ssh, kubernetes).

A backend knows how to start a Jupyter kernel somewhere and how to make its five ports reachable
from this process. It does not relay messages (``relay`` does) and does not own runtime state.

**One writer.** ``RuntimeManager`` (``airavata_magic.manager``) is the only code that changes a
``Runtime`` record or saves it. A backend is handed a ``Runtime`` to read and returns facts:

=====================  ==========================================================================
method                 returns (the manager applies it to the record and saves)
=====================  ==========================================================================
``request(rt)``        ``Submission(job_id, state, backend_state, reason, node)``
``restart(rt)``        ``dict`` of ``backend_state`` entries to merge, or ``None`` if unchanged
``observe(rts)``       ``{name: Observation}``; the walltime end is always ``Observation.ends_at``
``stop(rt)``           nothing; releases the job/pod/process (quietly if already gone)
=====================  ==========================================================================

``observe()`` only observes: it never kills a process, cancels a job or deletes a pod. A runtime
that must be cleaned up (walltime passed, kernel gone but its job still there) is reported in a
terminal state and the manager decides to call ``stop()``.

The manager creates one backend instance per resource and reuses it for every runtime on that
resource, so a backend may keep one SSH connection or API client open and share it.

Heavy imports (paramiko via ``transport``, kubernetes) belong inside methods, so that validating
a profile that mentions a kind does not pay for its client library. Profile value validators come
from ``airavata_magic.checks``; ``Resource`` is a profile concept (``profile.Resource``).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..errors import BackendError

if TYPE_CHECKING:
    from ..profile import Resource
    from ..runtime import Observation, Runtime, RuntimeSpec, RuntimeState

# A validator takes the raw YAML value and returns the cleaned value or raises ValueError /
# InvalidArgument with a message that fits after "key 'k': ".
Validator = Callable[[Any], Any]

# Connection info in the Jupyter connection-file format (ip, transport, shell_port, iopub_port,
# stdin_port, control_port, hb_port, key, signature_scheme), with ip/ports reachable from here.
ConnectionInfo = dict[str, Any]
#: the five kernel ports of a connection file
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


@dataclass
class AuthResult:
    """One row of ``%authenticate``: is this resource usable, and if not, how to fix it."""

    resource: str
    kind: str
    ok: bool
    detail: str


@dataclass
class Submission:
    """What ``Backend.request()`` reports about a runtime it just submitted.

    The manager copies these facts into the ``Runtime`` record and saves it."""

    job_id: str | None  # scheduler job id, pod name, or pid
    state: "RuntimeState"  # usually REQUESTED, QUEUED or STARTING
    #: backend-private facts needed to find the runtime again after the notebook kernel restarts
    #: (remote paths, pod name, pid). Never secrets, never the walltime end.
    backend_state: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # e.g. the scheduler's pending reason
    node: str | None = None  # where it runs, when already known
    ends_at: float | None = None  # epoch seconds when the walltime ends, when already known


class Backend(abc.ABC):
    """Starts kernels on one resource. Subclasses: one module (or package) each under ``backends/``.

    Called by ``RuntimeManager`` only (and by ``compute`` for ``run_batch``)."""

    #: the profile's ``kind:`` value this backend serves
    kind: ClassVar[str]
    #: profile keys this kind accepts (besides ``kind``), each with its validator
    profile_keys: ClassVar[dict[str, Validator]] = {}
    #: profile keys that must be present
    required_keys: ClassVar[tuple[str, ...]] = ()
    #: seconds between status queries while waiting; backends with a scheduler back off further
    poll_interval: ClassVar[float] = 0.5

    def __init__(self, resource: "Resource", runtime_dir: Callable[[str], Any]) -> None:
        """``runtime_dir(name)`` gives the private local directory for a runtime's files."""
        self.resource = resource
        self.runtime_dir = runtime_dir

    # -- lifecycle (called by the manager) ----------------------------------------------------
    @abc.abstractmethod
    def request(self, runtime: "Runtime") -> Submission:
        """Submit the runtime and return at once with what was submitted.

        ``runtime`` is read only (name, spec, resource). Raises ``BackendError`` with the
        scheduler's message when the submission is refused, ``InvalidArgument`` when the spec
        does not fit this kind."""

    @abc.abstractmethod
    def observe(self, runtimes: list["Runtime"]) -> dict[str, "Observation"]:
        """Current state of several runtimes of this resource, in as few queries as possible.

        Keyed by runtime name. STARTING means allocated but the kernel may not answer yet; the
        manager promotes to READY itself once ``kernel_info`` is answered. A runtime the
        scheduler no longer knows is FAILED/EXPIRED/STOPPED/DEAD with a reason, never silently
        dropped. Only observes: never kills, cancels or deletes anything (the manager calls
        ``stop()`` for a terminal runtime that still holds resources). Raises ``BackendError``
        when the status cannot be read at all."""

    @abc.abstractmethod
    def connection(self, runtime: "Runtime") -> ConnectionInfo | None:
        """Connection info reachable from this process (tunnels opened as needed), or None if the
        kernel has not written it yet. Called again after a restart or a dropped tunnel."""

    def interrupt(self, runtime: "Runtime", send_interrupt_request: Callable[[], None]) -> None:
        """Interrupt the running cell. Default: the kernel's own ``interrupt_request`` on the
        control channel, which ipykernel answers by signalling its process group."""
        send_interrupt_request()

    @abc.abstractmethod
    def restart(self, runtime: "Runtime") -> dict[str, Any] | None:
        """Start a fresh kernel in the same allocation; ``connection()`` then returns its info.

        Returns ``backend_state`` entries that changed (the manager merges and saves them), or
        None when nothing the record holds changed. The key ``job_id``, when present, is the new
        job id instead (a restarted local process has a new pid)."""

    @abc.abstractmethod
    def stop(self, runtime: "Runtime") -> None:
        """Stop the kernel and release the allocation (scancel, delete pod, kill the process),
        close its tunnels. Must succeed (quietly) when the runtime is already gone."""

    @abc.abstractmethod
    def authenticate(self) -> AuthResult:
        """Check credentials for real (SSH handshake + ``true``, SelfSubjectAccessReview)."""

    # -- optional ------------------------------------------------------------------------
    def estimate_start(self, runtime: "Runtime") -> float | None:
        """Seconds until this runtime would start if submitted now (``--use``), None if unknown.
        Raises ``BackendError`` when it could never start here."""
        return 0.0

    def estimate_reason(self, runtime: "Runtime") -> str:
        """A short "why" for the last ``estimate_start`` (e.g. sbatch --test-only's answer)."""
        return ""

    def kernel_alive(self, runtime: "Runtime", timeout: float = 1.0) -> bool | None:
        """A liveness check (a pid, a job or pod status) that gives up after ``timeout`` seconds
        (the manager passes less than the heartbeat's patience), or None when only the heartbeat
        can tell or the check could not finish in time. Called during a cell from the relay's
        liveness thread, never from its poll loop (``relay.liveness``): until a slow check
        answers, the heartbeat alone decides."""
        return None

    def run_batch(self, command: str, spec: "RuntimeSpec", on_stdout: Callable[[bytes], None],
                  on_stderr: Callable[[bytes], None]) -> int:
        """Run a shell command as a batch job (``airavata-magic compute execute``), streaming its
        output to ``on_stdout``/``on_stderr`` while it runs; return its exit code.

        Called by ``compute``. Only kinds that can run plain commands (slurm, ssh) override it."""
        raise BackendError(f"{self.kind} resources cannot run batch commands; "
                           "compute execute runs on slurm and ssh resources")

    def close(self) -> None:
        """Release connections held by this backend (not the runtimes themselves)."""
