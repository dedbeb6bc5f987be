"""The one reader of YAML and TOML files that users write (profiles, inputs specs, value files).

Mappings come back as ``LineDict``: a dict that remembers the 1-based line of itself and of each
key, so messages can name ``file:line``. Duplicate keys and non-text keys are errors. Any failure
to read or parse raises ``FileFormatError`` with the file, the line when known, and why.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml

from .errors import AiravataError


class FileFormatError(AiravataError):
    """A file that cannot be read, or is not valid YAML/TOML."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class LineDict(dict):
    """A mapping that remembers its own line and the line of each key (1-based)."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int | None:
        """The line of ``key``, else of this mapping, else None."""
        return self.lines.get(key, self.line or None)


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings are ``LineDict``."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict(node.start_mark.line + 1)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.MarkedYAMLError(problem="a key must be plain text", problem_mark=key_node.start_mark)
        if key in out:
            raise yaml.MarkedYAMLError(problem=f"duplicate key '{key}'", problem_mark=key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(source: str, filename: str = "<text>") -> Any:
    """Parse YAML text; mappings are ``LineDict``. Raises ``FileFormatError``."""
    try:
        return yaml.load(source, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise FileFormatError(filename, mark.line + 1 if mark else None,
                              f"not valid YAML: {e.problem or e}") from None
    except yaml.YAMLError as e:
        raise FileFormatError(filename, None, f"not valid YAML: {e}".replace("\n", " ")) from None


def parse_toml(source: str, filename: str = "<text>") -> Any:
    """Parse TOML text (plain dicts: tomllib keeps no line numbers). Raises ``FileFormatError``."""
    try:
        return tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        raise FileFormatError(filename, None, f"not valid TOML: {e}") from None


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a file; ``FileFormatError`` when missing or unreadable."""
    p = Path(path).expanduser()
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileFormatError(str(p), None, "file not found") from None
    except OSError as e:
        raise FileFormatError(str(p), None, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise FileFormatError(str(p), None, "not UTF-8 text") from None


def load(path: str | Path) -> Any:
    """Read a ``.toml`` file as TOML, anything else as YAML."""
    p = Path(path).expanduser()
    source = read_text(p)
    return parse_toml(source, str(p)) if p.suffix.lower() == ".toml" else parse_yaml(source, str(p))
