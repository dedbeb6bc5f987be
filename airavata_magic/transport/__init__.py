"""Transports that make a remote kernel's ports reachable here: SSH tunnels, Kubernetes port-forward."""
