"""Applications: Lmod modules, conda environments and registered executables of each resource.

``import airavata_magic as am``::

    am.applications.list(resource="hpc", search="psi4")   # DataFrame, cached per resource
    am.applications.show("psi4/1.9", resource="hpc")       # versions, help, prerequisites
    am.applications.add("psi4/1.9", runtime="hpc_cpu")    # edits cybershuttle.yml in place
    am.applications.register("mytool", "/home/me/bin/mytool", "hpc", private=True)
"""
from __future__ import annotations

from .api import add, list_applications, register, show

list = list_applications  # noqa: A001 - am.applications.list(), as the issue names it

__all__ = ["list", "show", "add", "register"]
