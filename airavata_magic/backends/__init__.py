"""Backend registry: the profile's ``kind:`` -> the one module that serves it.

Modules are imported on first use, so a profile that never mentions Kubernetes never imports
the kubernetes client; and backend modules import their client library (paramiko through
``transport.ssh``, kubernetes) inside functions only, so validating a profile imports neither.

``kind: local`` is served by ``LocalProcessBackend``: a kernel in a separate process on this
machine (not the notebook's own kernel, which is the runtime name ``local``).
"""
from __future__ import annotations

import importlib

from ..errors import AiravataError
from .base import AuthResult, Backend, ConnectionInfo, Submission

_REGISTRY: dict[str, str] = {
    "local": "airavata_magic.backends.local_process:LocalProcessBackend",
    "slurm": "airavata_magic.backends.slurm:SlurmBackend",
    "ssh": "airavata_magic.backends.ssh:SshBackend",
    "kubernetes": "airavata_magic.backends.kubernetes:KubernetesBackend",
}

KINDS = tuple(_REGISTRY)


def backend_class(kind: str) -> type[Backend]:
    """The backend class for a resource kind."""
    try:
        target = _REGISTRY[kind]
    except KeyError:
        raise AiravataError(f"unknown resource kind {kind!r}; use one of {', '.join(KINDS)}") from None
    module, _, cls = target.partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        raise AiravataError(f"the {kind} backend is not available in this install ({e})") from None


__all__ = ["AuthResult", "Backend", "ConnectionInfo", "KINDS", "Submission", "backend_class"]
