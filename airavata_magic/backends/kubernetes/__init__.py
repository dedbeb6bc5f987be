"""Kubernetes runtimes: one pod per runtime, reached through the API server's port-forward.

- ``settings``: the profile schema of ``kind: kubernetes`` (no client library import);
- ``manifests``: the pod and Secret, rendered as data (pure);
- ``status``: a pod and its events mapped to a runtime state (pure);
- ``api``: the API client, the only module that imports ``kubernetes``;
- ``restart``: a kernel restarted in place through the relay's ``KernelLink``;
- ``liveness``: pod liveness for a running cell, answered within a deadline;
- ``backend``: ``KubernetesBackend``, the lifecycle behind the one backend interface.

Importing this package imports none of the client libraries; they load on the first API call.
"""
from __future__ import annotations

from .backend import KubernetesBackend
from .manifests import KERNEL_PORTS, PodRequest, label_value, pod_name, render_pod, render_secret
from .status import format_events, observation_from_pod

__all__ = ["KERNEL_PORTS", "KubernetesBackend", "PodRequest", "format_events", "label_value",
           "observation_from_pod", "pod_name", "render_pod", "render_secret"]
