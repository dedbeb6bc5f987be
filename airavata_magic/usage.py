"""How every magic reports a problem: one line, as an IPython ``UsageError``, never a traceback.

Only two things become a UsageError here: this package's own errors (``AiravataError``, whose text
is written for the user) and an argument line that cannot be parsed. Anything else is a fault in
the code or below it and keeps its own type and traceback.
"""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic_arguments import parse_argstring

from .checks import one_line
from .errors import AiravataError, RuntimeFailed

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn this package's errors into one-line UsageErrors (no traceback from deep inside)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RuntimeFailed as e:
            if e.log_tail:
                print("--- log tail ---\n" + e.log_tail, file=sys.stderr, flush=True)
            raise UsageError(one_line(e)) from None
        except (AiravataError, UsageError) as e:
            raise UsageError(one_line(e)) from None

    return wrapper  # type: ignore[return-value]


def parse(magic: Callable[..., Any], line: str) -> Any:
    """Parse a magic's argument line with its ``@magic_arguments``; a bad line is a UsageError."""
    try:
        return parse_argstring(magic, line)
    except ValueError as e:  # e.g. unbalanced quotes
        raise UsageError(one_line(f"cannot parse the arguments: {e}")) from None
