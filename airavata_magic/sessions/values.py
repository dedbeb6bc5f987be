"""Small helpers a notebook (or an exported/template notebook) calls.

- ``record(name, value)``: record a named result; template sweeps collect it into their table
  (re-exported as ``airavata_magic.record_value``).
- ``secret(name)``: a secret an exported notebook needs again: from ``$AIRAVATA_SECRET_<NAME>``,
  else asked with ``getpass``; says which, never prints the value.
- ``push_values(runtimes, **values)``: set variables on remote runtimes (template inputs that a
  remote cell used to assign, secrets a remote cell needs).
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any

from .. import known_secrets
from ..errors import AiravataError, InvalidArgument

VALUE_MIME = "application/vnd.airavata.value+json"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def record(name: str, value: Any) -> None:
    """Record ``value`` under ``name`` in this notebook's output (JSON-serializable values only)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(f"invalid value name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
    if hasattr(value, "item") and callable(value.item):
        value = value.item()  # numpy/torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        value = str(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidArgument(f"cannot record {name!r}: {type(value).__name__} is not JSON-serializable; "
                              "record a number, text, list or dict") from None
    from IPython.display import display

    display({VALUE_MIME: {"name": name, "value": value}, "text/plain": f"{name} = {value!r}"}, raw=True)


def recorded_values(nb: dict[str, Any]) -> dict[str, Any]:
    """Every value ``record`` put in an executed notebook (the last one wins per name)."""
    out: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []) or []:
            data = o.get("data") or {}
            if VALUE_MIME in data:
                v = data[VALUE_MIME]
                if isinstance(v, str):
                    v = json.loads(v)
                out[v["name"]] = v["value"]
    return out


def env_var(name: str) -> str:
    """The environment variable a secret is read from: ``AIRAVATA_SECRET_`` + NAME in capitals."""
    return "AIRAVATA_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def secret(name: str) -> str:
    """A secret the recorded session used, from the environment or asked for (and which is said)."""
    var = env_var(name)
    value = os.environ.get(var)
    if value:
        print(f"secret {name!r}: read from ${var}", file=sys.stderr, flush=True)
    else:
        import getpass

        try:
            value = getpass.getpass(f"secret {name!r} (or set ${var}): ")
        except Exception as e:  # noqa: BLE001 - papermill/nbclient disable stdin
            raise AiravataError(f"secret {name!r} is needed and cannot be asked for here "
                                f"({type(e).__name__}); set ${var}") from None
        print(f"secret {name!r}: asked for", file=sys.stderr, flush=True)
    known_secrets.remember(value)
    return value


def push_values(runtimes: str, **values: Any) -> None:
    """Assign ``values`` as variables on the runtimes ``runtimes`` (comma-separated) through
    ``%%run_on``. Values must be Python literals (numbers, text, lists, dicts, None)."""
    lines = []
    for key, value in values.items():
        text = repr(value)
        import ast

        try:
            ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise InvalidArgument(f"cannot send {key!r} to {runtimes}: {type(value).__name__} is not a literal") from None
        lines.append(f"{key} = {text}")
    from IPython import get_ipython

    ip = get_ipython()
    if ip is None:
        raise AiravataError("push_values needs IPython with airavata_magic loaded")
    ip.run_cell_magic("run_on", runtimes, "\n".join(lines) + "\nNone\n")
