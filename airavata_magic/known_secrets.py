"""Values this process learned are secret (what ``getpass()`` returned, remote or local).

The relay adds to it; session recording reads it to keep secrets out of journals. Values live
only in memory and are never written anywhere.
"""
from __future__ import annotations

import threading

_lock = threading.Lock()
_values: set[str] = set()


def remember(value: str) -> None:
    """Mark ``value`` as secret for the life of this process (empty strings are ignored)."""
    if value:
        with _lock:
            _values.add(value)


def known() -> frozenset[str]:
    """Every secret value seen so far."""
    with _lock:
        return frozenset(_values)
