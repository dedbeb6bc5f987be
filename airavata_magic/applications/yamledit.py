"""Edit ``cybershuttle.yml`` in place with ruamel.yaml's round trip: comments, key order, quoting
and the file's indentation kept; the result is validated as a profile before it replaces the
file, so a profile is never left broken, and an unwritable one is never touched.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import AiravataError, InvalidArgument
from ..profile import parse_profile


def _yaml(text: str) -> tuple[Any, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    _, indent, block_seq_indent = load_yaml_guess_indent(text)
    y = YAML()  # round trip
    y.preserve_quotes = True
    y.width = 4096  # never fold a long setup line
    indent = indent or 2
    offset = block_seq_indent or 0
    y.indent(mapping=indent, sequence=max(indent, offset + 2), offset=offset)
    return y, y.load(text)


def check_writable(path: str | Path) -> None:
    """One line when the profile (or its directory, needed for the atomic replace) is read-only."""
    p = Path(path).resolve()
    if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK | os.X_OK):
        what = "the file" if not os.access(p, os.W_OK) else "its directory"
        raise InvalidArgument(f"profile {p} is not writable ({what}); nothing changed; "
                              "make it writable or pass --file with a copy you own")


def edit(path: str | Path, change: Callable[[Any], str | None]) -> str | None:
    """Load ``path``, let ``change(document)`` edit it (it returns a message, or None for "no
    change"), validate the new text as a profile and replace the file atomically, keeping its mode.
    Returns ``change``'s message."""
    p = Path(path).resolve()  # a symlinked profile (dotfiles) stays a symlink: its target is edited
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise AiravataError(f"cannot read profile {p}: {e.strerror}") from None
    check_writable(p)
    y, doc = _yaml(text)
    if doc is None:
        raise InvalidArgument(f"profile {p} is empty; add resources: first")
    message = change(doc)
    if message is None:
        return None
    buf = io.StringIO()
    y.dump(doc, buf)
    new = buf.getvalue()
    parse_profile(new, str(p))  # raises ProfileError before anything is written
    mode = p.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return message


def section(doc: Any, *keys: str, create: bool = False, flow: bool | None = None) -> Any:
    """``doc[k1][k2]...``, creating empty mappings on the way when ``create``."""
    from ruamel.yaml.comments import CommentedMap

    node = doc
    for key in keys:
        if key not in node or node[key] is None:
            if not create:
                return None
            node[key] = CommentedMap()
            if flow:
                node[key].fa.set_flow_style()
        node = node[key]
    return node


def append_lines(mapping: Any, key: str, lines: list[str]) -> None:
    """Append ``lines`` to ``mapping[key]`` (a list, made as the mapping's style wants if absent)."""
    from ruamel.yaml.comments import CommentedSeq

    value = mapping.get(key)
    if value is None:
        seq = CommentedSeq(lines)
        if mapping.fa.flow_style():
            seq.fa.set_flow_style()
        mapping[key] = seq
    elif isinstance(value, str):
        mapping[key] = CommentedSeq([value, *lines])
    else:
        value.extend(lines)
