"""Where per-user state lives: ``$AIRAVATA_MAGIC_HOME`` (default: platformdirs user data dir).

Everything under it is private to the user: directories 0700, files 0600, written atomically.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import platformdirs

APP = "airavata-magic"


def home() -> Path:
    """The per-user state directory, created 0700 on first use."""
    root = Path(os.environ.get("AIRAVATA_MAGIC_HOME") or platformdirs.user_data_dir(APP))
    return private_dir(root.expanduser())


def config_dir() -> Path:
    """The per-user config directory, searched last for ``cybershuttle.yml``."""
    return Path(platformdirs.user_config_dir(APP))


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes | str, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), mode 0600.

    ``fsync=False`` keeps the atomicity against a crashing process but not against a crashing
    machine, for writes on a hot path (the session journal)."""
    private_dir(path.parent)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json(path: Path, obj: Any) -> None:
    write_private(path, json.dumps(obj, indent=1, sort_keys=True))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
