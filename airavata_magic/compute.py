"""``am.compute``: batch commands, the profile's resources, and this user's usage.

The same functions ``airavata-magic compute execute|list|usage`` and ``%resources``/``%usage`` call.
"""
from __future__ import annotations

from .batch import execute  # noqa: F401
from .cluster.api import resources, usage  # noqa: F401

__all__ = ["execute", "resources", "usage"]
