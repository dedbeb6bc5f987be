"""Value checks and one-line error text: the one place user-supplied values are validated.

Every check takes a raw value (from YAML, a magic's argument or the command line) and returns the
cleaned value, or raises ``InvalidArgument`` whose text fits after "key 'k': " or stands alone.
``what`` names the value for a standalone message ("invalid cpus 'x': expected a whole number").
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

from .errors import InvalidArgument

#: A check takes the raw value and returns the cleaned one or raises ``InvalidArgument``.
Check = Callable[[Any], Any]


def _fail(what: str | None, value: Any, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid {what} {value!r}: {why}" if what else why)


def one_line(message: object) -> str:
    """A message on one line: control characters (newlines from user input too) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message).strip())


def text(value: Any, what: str | None = None) -> str:
    """Non-empty printable text on one line (numbers are accepted and turned into text)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _fail(what, value, f"expected text, got {type(value).__name__}")
    s = str(value)
    if not s.strip() or len(s) > 4096 or any(ord(c) < 32 or c == "\x7f" for c in s):
        raise _fail(what, value, "expected non-empty text on one line")
    return s


def port(value: Any, what: str | None = None) -> int:
    """A TCP port number 1-65535."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _fail(what, value, f"expected a port number 1-65535, got {value!r}")
    return value


def path(value: Any, what: str | None = None) -> str:
    """A path; ``~`` is kept (it may be expanded on the remote side)."""
    return text(value, what)


def text_list(value: Any, what: str | None = None) -> list[str]:
    """A list of text; a single string is a one-item list."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _fail(what, value, f"expected a list of text, got {type(value).__name__}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise _fail(what, value, f"expected a list of text, found {item!r}")
        out.append(str(item))
    return out


def whole_number(value: Any, what: str, minimum: int = 1, maximum: int = 10**6) -> int:
    """A whole number within [minimum, maximum]; "4" and 4.0 are accepted, 4.5 and True are not."""
    if isinstance(value, bool):
        raise _fail(what, value, "expected a whole number")
    try:
        n = int(value)
        if isinstance(value, float) and n != value:
            raise ValueError
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise _fail(what, value, "expected a whole number") from None
    if not minimum <= n <= maximum:
        raise _fail(what, value, f"must be between {minimum} and {maximum}")
    return n


def seconds(value: Any, what: str = "timeout") -> float:
    """A positive, finite number of seconds."""
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise _fail(what, value, "give a positive number of seconds") from None
    if isinstance(value, bool) or not math.isfinite(s) or s <= 0:
        raise _fail(what, value, "give a positive number of seconds")
    return s


_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_MEM_UNITS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def memory_mb(value: Any) -> int:
    """Memory in MB from ``512M``, ``8G``, ``1.5T`` or a bare number of MB."""
    hint = "use e.g. 512M, 8G, or a number of MB"
    if isinstance(value, bool):
        raise _fail("memory", value, hint)
    if isinstance(value, (int, float)):
        mb = float(value)
    else:
        m = _MEM_RE.match(str(value))
        if not m:
            raise _fail("memory", value, hint)
        mb = float(m.group(1)) * _MEM_UNITS[m.group(2).upper()]
    if mb < 1 or mb > 1024**3:
        raise _fail("memory", value, "must be between 1M and 1024T")
    return int(round(mb))


_RUNTIME_NAME_RE = re.compile(r"^[^\s/\\,\x00-\x1f\x7f]{1,64}$")


def runtime_name(name: Any) -> str:
    """A runtime name: 1-64 printable characters without whitespace, '/', '\\' or ','."""
    if not isinstance(name, str) or not _RUNTIME_NAME_RE.match(name) or name[0] in "-.":
        raise InvalidArgument(
            f"invalid runtime name {name!r}: use 1-64 characters without spaces, '/', '\\' or ',', "
            "not starting with '-' or '.'"
        )
    return name


_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def key_name(name: Any, what: str = "name") -> str:
    """A name used as a key (resource, storage, template): letters, digits, '_', '.', '-'."""
    if not isinstance(name, str) or not _KEY_RE.match(name):
        raise InvalidArgument(f"invalid {what} {name!r}: use 1-63 letters, digits, '_', '.', '-', "
                              "starting with a letter or digit")
    return name
