"""The Kubernetes API client for one resource: the only module that imports ``kubernetes``.

The client is imported and connected on first use, and responses are read as plain JSON dicts
(``_preload_content=False``): the same shapes the manifests are written in, and no cost of
building model objects on every poll. Every failure is one ``BackendError`` line.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ...errors import BackendError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a call raises when the API server cannot be reached or answered in time (urllib3
    connection, timeout and TLS errors; sockets), or when the kubeconfig's credential plugin
    fails to refresh a token: failures of the cluster, not of this code."""
    import urllib3
    from kubernetes.config.config_exception import ConfigException

    return (urllib3.exceptions.HTTPError, OSError, ConfigException)


def _short(e: BaseException) -> str:
    """The innermost useful line of a urllib3/ssl error."""
    msg = str(getattr(e, "reason", None) or e)
    return msg.splitlines()[0][:300] if msg else type(e).__name__


class KubeApi:
    """A lazily connected ``ApiClient`` for a resource's kubeconfig context (or in-cluster config).

    Thread-safe: the connection pool is shared by the caller's thread and the liveness checks.
    """

    #: seconds for any one API call; a cluster that does not answer is an error, not a hang
    request_timeout: float = 15.0

    def __init__(self, resource: str, source: str, settings: dict[str, Any]) -> None:
        self.resource, self.source, self.settings = resource, source, settings
        self._lock = threading.Lock()
        self._client: Any = None
        self._namespace: str | None = None

    # -- connection --------------------------------------------------------------------------
    def client(self) -> Any:
        """The shared ``kubernetes.client.ApiClient`` (created on first use)."""
        with self._lock:
            if self._client is None:
                self._client, self._namespace = self._connect()
            return self._client

    @property
    def configuration(self) -> Any:
        """The ``kubernetes.client.Configuration`` in use (host, TLS, credentials)."""
        return self.client().configuration

    @property
    def namespace(self) -> str:
        """The profile's namespace, else the context's, else ``default``."""
        self.client()
        if self._namespace is None:
            raise BackendError(f"resource {self.resource!r}: no Kubernetes namespace could be determined; "
                               "set namespace: in the profile")
        return self._namespace

    def _connect(self) -> tuple[Any, str]:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        context = self.settings.get("context")
        kubeconfig = self.settings.get("kubeconfig")
        in_cluster = not context and not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST")
        where = f"resource {self.resource!r} ({self.source})"
        cfg = client.Configuration()
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=cfg)
                default_ns = IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else "default"
            else:
                cfg_file = os.path.expanduser(kubeconfig) if kubeconfig else None
                config.load_kube_config(config_file=cfg_file, context=context, client_configuration=cfg)
                contexts, current = config.list_kube_config_contexts(config_file=cfg_file)
                ctx = next((c for c in contexts if c["name"] == context), current) if context else current
                default_ns = ((ctx or {}).get("context") or {}).get("namespace") or "default"
        except ConfigException as e:
            raise BackendError(f"{where}: cannot load the Kubernetes configuration: {e}; check kubeconfig: and context:") from None
        except (OSError, ValueError, TypeError) as e:
            raise BackendError(f"{where}: cannot read the kubeconfig: {e}") from None
        cfg.retries = 1
        return client.ApiClient(cfg), self.settings.get("namespace") or default_ns

    def close(self) -> None:
        """Close the connection pool (a later call connects again)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- calls -------------------------------------------------------------------------------
    def call(self, api: str, method: str, *args: Any, missing_ok: bool = False,
             timeout: float | None = None, **kwargs: Any) -> Any:
        """Call ``CoreV1Api``/``AuthorizationV1Api`` ``method``; the JSON body as dicts (a log as text).

        Returns None for 404 when ``missing_ok``. Every other failure is a one-line BackendError.
        ``timeout`` (seconds) bounds each attempt; default ``request_timeout``.
        """
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api_client = self.client()
        target = getattr(getattr(client, api)(api_client), method)
        try:
            resp = target(*args, _preload_content=False, _request_timeout=timeout or self.request_timeout, **kwargs)
            data = resp.data
        except ApiException as e:
            if e.status == 404 and missing_ok:
                return None
            raise BackendError(self._api_error(e)) from None
        except _network_errors() as e:
            raise BackendError(f"cannot reach the Kubernetes API at {api_client.configuration.host} "
                               f"for resource {self.resource!r}: {_short(e)}") from None
        if method == "read_namespaced_pod_log":
            return data.decode("utf-8", "replace")
        return json.loads(data) if data else {}

    def _api_error(self, e: Any) -> str:
        try:
            message = json.loads(e.body).get("message") or e.reason
        except (TypeError, ValueError, AttributeError):
            message = e.reason or str(e.status)
        hint = {401: "; the kubeconfig's credentials were rejected: log in again or refresh the token",
                403: "; run %authenticate to see which permission is missing"}.get(e.status, "")
        return f"Kubernetes API ({self.resource}): {message} (HTTP {e.status}){hint}"

    def node_exists(self, node: str) -> bool | None:
        """Does the cluster have this node? None when it cannot be told (users often may not
        read nodes, which are cluster-scoped; or the API is away)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            client.CoreV1Api(self.client()).read_node(node, _preload_content=False,
                                                      _request_timeout=self.request_timeout)
        except ApiException as e:
            return False if e.status == 404 else None
        except _network_errors():
            return None  # unreachable: the create that follows reports it
        return True

    def wait_gone(self, namespace: str, name: str, timeout: float) -> None:
        """Watch a pod until it is deleted (or ``timeout``), so a stop is complete when it returns."""
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        listing = self.call("CoreV1Api", "list_namespaced_pod", namespace, field_selector=f"metadata.name={name}")
        if not listing.get("items"):
            return
        core = client.CoreV1Api(self.client())
        w = watch.Watch()
        try:
            for ev in w.stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                               resource_version=listing["metadata"].get("resourceVersion"),
                               timeout_seconds=max(1, int(timeout)), _request_timeout=timeout + 5):
                if ev["type"] == "DELETED":
                    return
        except (ApiException, *_network_errors()):
            return  # the watch is a courtesy: the delete itself was accepted
        finally:
            w.stop()
