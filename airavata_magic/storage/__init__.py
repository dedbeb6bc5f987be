"""Named storage, fast verified copies, datasets and variables between kernels (issue 9).

The Python API (the magics and the CLI call these same functions)::

    from airavata_magic import storage
    fs, root = storage.filesystem("scratch")     # an fsspec filesystem and the root path in it
    storage.list_locations()                     # DataFrame: name, kind, location, writable, source

Nothing heavy is imported here: fsspec, asyncssh and paramiko load on first use.
"""
from __future__ import annotations

from .locations import Location, check_name, filesystem, get, location_filesystem, parse

__all__ = ["Location", "filesystem", "location_filesystem", "get", "parse", "check_name"]
