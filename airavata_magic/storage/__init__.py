"""Named storage, fast verified copies, datasets and variables between kernels (issue 9).

The Python API; the magics and the CLI call these same functions::

    from airavata_magic import storage
    fs, root = storage.filesystem("scratch")         # an fsspec filesystem and the root path in it
    storage.list_locations()                         # DataFrame: name, kind, location, writable, source
    storage.ls("scratch:runs")                       # DataFrame: name, type, size, modified
    storage.register("lab", "/srv/lab"); storage.remove("lab")
    storage.mount("scratch", "hpc_cpu", "data")      # a link in the runtime's working directory
    storage.copy("local:x.csv", "scratch:in/x.csv", verify=True)   # -> CopyResult
    storage.dataset.register("mnist", "https://.../mnist.tar.gz", sha256="...")
    storage.dataset.load("mnist", "hpc_cpu")         # read-only cache on the resource; sets `mnist` there
    storage.push_vars("hpc_cpu", df=df); storage.pull_vars("hpc_cpu", ["result"])

Nothing heavy is imported here: fsspec, asyncssh, paramiko and pandas load on first use.
"""
from __future__ import annotations

from . import datasets as dataset
from .api import list_locations, ls, mount, register, remove
from .copying import CopyResult, copy
from .locations import Location, filesystem, get, location_filesystem
from .variables import pull_vars, push_vars

__all__ = ["Location", "filesystem", "location_filesystem", "get", "list_locations", "ls", "register", "remove",
           "mount", "copy", "CopyResult", "dataset", "push_vars", "pull_vars"]
