"""Executables users register as applications.

- private: this user's only, in ``$AIRAVATA_MAGIC_HOME/applications/registered.json`` (0600).
- shared: in the profile's ``applications:`` section, so everyone who uses that
  ``cybershuttle.yml`` (a lab's shared profile) sees them; written with the comment-keeping editor.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import InvalidArgument
from ..profile import Profile
from .catalog import REGISTERED, Application

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _store() -> Path:
    return paths.private_dir(paths.home() / "applications") / "registered.json"


def private_entries() -> list[dict[str, str]]:
    """This user's private registrations (resource, name, command, description)."""
    p = _store()
    try:
        data = paths.read_json(p)
    except FileNotFoundError:
        return []
    except ValueError as e:
        raise InvalidArgument(f"{p} is not valid JSON ({e}); fix or remove it") from None
    return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []


def save_private(entries: list[dict[str, str]]) -> None:
    paths.write_json(_store(), entries)


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(f"invalid application name {name!r}: use letters, digits, '_', '.', '-' (1-63)")
    return name


def check_command(command: str) -> str:
    """An absolute path (or ``~/...``) on the resource, one line, no NUL."""
    if not isinstance(command, str) or not command.strip() or any(c in command for c in "\n\r\x00"):
        raise InvalidArgument("--command needs the path of an executable on the resource, e.g. /home/me/bin/tool")
    if not (command.startswith("/") or command.startswith("~/")):
        raise InvalidArgument(f"--command {command!r} must be an absolute path (or ~/...) on the resource")
    return command


def registered(profile: Profile, resource: str) -> list[Application]:
    """Registered applications on ``resource``: the profile's shared ones and this user's private ones."""
    out = []
    for name, e in profile.applications.items():
        if e["resource"] == resource:
            out.append(_app(name, e, resource, private=False))
    for e in private_entries():
        if e.get("resource") == resource:
            out.append(_app(str(e.get("name")), e, resource, private=True))
    return out


def _app(name: str, e: dict[str, Any], resource: str, private: bool) -> Application:
    return Application(name=name, version="", source=REGISTERED, resource=resource, default=True,
                       description=str(e.get("description") or ""), path=str(e["command"]), private=private)
