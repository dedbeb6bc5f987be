"""The runtime manager: the one owner of runtime state in a process (``RuntimeManager``).

- ``core``: records (the one writer), request, refresh, idle culling, stop, attach, views' rows;
- ``cells``: waiting for a kernel, connecting, running cells, liveness checks with a deadline;
- ``links``: the one cache of connected runtimes (record + backend + link, by name);
- ``walltime``: the warnings before a walltime ends and their timers;
- ``requests``: from a preset/flags to candidate runtimes, and the choice among them.

Presentation (tables, status bundles, printed lines) is in ``airavata_magic.views``.
"""
from __future__ import annotations

from ..views import auth_rows, format_seconds, print_state_changes
from .core import RuntimeManager, apply_observation, apply_submission

__all__ = ["RuntimeManager", "apply_observation", "apply_submission", "auth_rows", "format_seconds",
           "print_state_changes"]
