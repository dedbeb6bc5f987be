"""Jupyter integration: a kernel provisioner and kernelspecs that put whole notebooks on runtimes."""
