"""Runtimes: the model (``model``: what was asked for, where it runs, its state) and the on-disk
record store (``store``). The ``RuntimeManager`` (``airavata_magic.manager``) changes records."""
from __future__ import annotations

from .model import (LOCAL, SPEC_FIELDS, Observation, Runtime, RuntimeSpec, RuntimeState, parse_memory,
                    validate_name)
from .store import BrokenRecord, RuntimeStore, idle_limit, process_start

__all__ = ["LOCAL", "SPEC_FIELDS", "BrokenRecord", "Observation", "Runtime", "RuntimeSpec", "RuntimeState",
           "RuntimeStore", "idle_limit", "parse_memory", "process_start", "validate_name"]
