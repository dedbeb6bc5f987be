"""The node list for the Kubernetes API **simulator** (``simulator.py``; still not a cluster).

Serves ``GET /api/v1/nodes`` (with ``labelSelector``) over the simulator's nodes, each with its
labels, taints, ``capacity`` and ``allocatable`` (the same numbers: the simulator reserves nothing
for the kubelet) and a ``Ready`` condition. Nodes are cluster-scoped: a user without a
ClusterRole that grants ``list nodes`` gets 403, as most research clusters answer their users;
tests cause that with ``sim.deny("list", "nodes")``. Hooked into the simulator with one line in
``Simulator._serve``.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web


def register_nodes(sim: Any, router: web.UrlDispatcher) -> None:
    """Add the node list route to the simulator's router."""
    async def list_nodes(request: web.Request) -> web.Response:
        from .simulator import _status, matches_labels

        if ("list", "nodes", "") in sim.denied:
            return _status(403, "Forbidden", f'nodes is forbidden: User "{sim.user}" cannot list resource "nodes" '
                                             'in API group "" at the cluster scope')
        sel = request.query.get("labelSelector", "")
        items = [node_object(n) for n in sim.nodes if matches_labels(n.labels, sel)]
        return web.json_response({"kind": "NodeList", "apiVersion": "v1",
                                  "metadata": {"resourceVersion": str(sim._current_rv())}, "items": items})

    router.add_get("/api/v1/nodes", list_nodes)


def _quantity(key: str, value: float) -> str:
    if key == "memory":
        return f"{int(value)}Mi"
    return str(int(value)) if float(value).is_integer() else f"{int(value * 1000)}m"


def node_object(node: Any) -> dict[str, Any]:
    """A simulated node as the API shows it."""
    cap = {k: _quantity(k, v) for k, v in node.capacity.items()}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": dict(node.labels)},
            "spec": {"taints": list(node.taints)},
            "status": {"capacity": cap, "allocatable": dict(cap),
                       "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}]}}
