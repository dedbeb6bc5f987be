"""One exception root for everything a user can be told.

Every error a user sees is one line: what is wrong and how to fix it. The magics turn any
``AiravataError`` into an IPython ``UsageError``; the command line prints it and exits 2.
"""
from __future__ import annotations


class AiravataError(Exception):
    """Root of every error this package raises on purpose. ``str()`` is the one line shown."""


class ProfileError(AiravataError):
    """A profile (``cybershuttle.yml``) is missing, malformed, or has a bad key or value."""

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        where = path if line is None else f"{path}:{line}"
        what = f" key '{key}'" if key else ""
        super().__init__(f"profile {where}{what}: {message}")


class InvalidArgument(AiravataError):
    """A magic or command-line argument that cannot be used as given."""


class RuntimeNotFound(AiravataError):
    """No runtime of that name is known for this user."""


class RuntimeUnavailable(AiravataError):
    """The runtime exists but cannot run cells: failed, stopped, expired, dead, or not ready."""


class BackendError(AiravataError):
    """A scheduler, SSH host or Kubernetes API refused or failed an operation."""


class TransportError(BackendError):
    """An SSH connection, tunnel or port-forward could not be made or restored."""


class KernelDied(AiravataError):
    """The remote kernel stopped answering its heartbeat (or exited) while a cell ran."""

    def __init__(self, message: str, runtime: str | None = None) -> None:
        super().__init__(message)
        self.runtime = runtime


class RuntimeFailed(RuntimeUnavailable):
    """A wait ended because the runtime failed, expired, died or was stopped; carries the log tail."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class RequestLost(AiravataError):
    """A cell's request was lost when a tunnel dropped; the runtime itself may be fine."""
