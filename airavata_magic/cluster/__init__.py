"""Compute resources and usage (``am.compute.resources()``, ``am.compute.usage()``)."""
from __future__ import annotations

from .api import resources, usage

__all__ = ["resources", "usage"]
