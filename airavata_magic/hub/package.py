"""The model package format and the metadata every hub entry carries (``model.json``).

A model package is a folder::

    model.json      metadata (below)
    model.py        the entry module named by ``entry``; defines ``load(mode, device)``
    weights.safetensors | weights.pt   optional, named by ``weights``

``load("inference", device)`` returns an object with ``predict(batch) -> array`` (scores per
class, or labels); ``load("modify", device)`` returns the ``torch.nn.Module`` itself. Datasets carry
the same metadata with ``type: dataset`` and a ``files`` list (an ``.npz`` with ``X`` and ``y`` is
what training tasks read).

Checks here read files and parse the entry module's syntax; they never import it (publishing a
package must not need torch, nor run a stranger's code).
"""
from __future__ import annotations

import ast
import datetime as _dt
import json
import os
import pwd
import re
import uuid as _uuid
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,31}$")
TYPES = ("model", "dataset")
FRAMEWORKS = ("torch", "sklearn", "python")
VISIBILITY = ("public", "shared", "private")
REQUIRED = ("name", "title", "domain", "description", "version", "type")
FILLED = ("uuid", "owner", "publication_date")
MODEL_KEYS = ("framework", "inputs", "outputs", "entry")
OPTIONAL = ("weights", "visibility", "shared_with", "group", "files", "format", "classes", "labels",
            "session", "kind", "source_task", "params", "metrics")


def current_user() -> str:
    """The Unix user running this process (the owner of what it publishes)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def _text(meta: dict[str, Any], key: str, where: str) -> str:
    value = meta.get(key)
    if not isinstance(value, str) or not value.strip() or "\n" in value and key != "description":
        raise InvalidArgument(f"{where}: field '{key}' must be non-empty text (got {value!r})")
    return value


def _io(meta: dict[str, Any], key: str, where: str) -> None:
    value = meta.get(key)
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise InvalidArgument(f"{where}: field '{key}' must be an object with a 'type', "
                              f"e.g. {{\"type\": \"ndarray\", \"shape\": [8, 8]}}")
    shape = value.get("shape")
    if shape is not None and (not isinstance(shape, list) or not all(isinstance(n, int) and n > 0 for n in shape)):
        raise InvalidArgument(f"{where}: field '{key}.shape' must be a list of positive integers")


def validate(meta: Any, where: str = "model.json", complete: bool = True) -> dict[str, Any]:
    """Check metadata; ``complete`` also requires the fields ``describe()`` fills. Returns it."""
    if not isinstance(meta, dict):
        raise InvalidArgument(f"{where}: must be a JSON object")
    unknown = set(meta) - set(REQUIRED) - set(FILLED) - set(MODEL_KEYS) - set(OPTIONAL)
    if unknown:
        raise InvalidArgument(f"{where}: unknown field '{sorted(unknown)[0]}'; known: "
                              f"{', '.join(REQUIRED + FILLED + MODEL_KEYS + OPTIONAL)}")
    for key in REQUIRED + (FILLED if complete else ()):
        if key not in meta:
            raise InvalidArgument(f"{where}: missing field '{key}'")
    for key in REQUIRED + tuple(k for k in FILLED if k in meta):
        _text(meta, key, where)
    if not NAME_RE.match(meta["name"]):
        raise InvalidArgument(f"{where}: field 'name' uses letters, digits, '_', '.', '-' (got {meta['name']!r})")
    if not VERSION_RE.match(meta["version"]):
        raise InvalidArgument(f"{where}: field 'version' must look like 1.0 or 2.1.3 (got {meta['version']!r})")
    if meta["type"] not in TYPES:
        raise InvalidArgument(f"{where}: field 'type' must be one of {', '.join(TYPES)} (got {meta['type']!r})")
    if "publication_date" in meta:
        try:
            _dt.date.fromisoformat(str(meta["publication_date"])[:10])
        except ValueError:
            raise InvalidArgument(f"{where}: field 'publication_date' must be an ISO date (YYYY-MM-DD)") from None
    if "uuid" in meta:
        try:
            _uuid.UUID(str(meta["uuid"]))
        except ValueError:
            raise InvalidArgument(f"{where}: field 'uuid' is not a UUID") from None
    vis = meta.get("visibility", "private")
    if vis not in VISIBILITY:
        raise InvalidArgument(f"{where}: field 'visibility' must be public, shared or private (got {vis!r})")
    if vis == "shared" and bool(meta.get("group")) == bool(meta.get("shared_with")):
        raise InvalidArgument(f"{where}: visibility 'shared' needs either 'group' (a Unix group) or 'shared_with' "
                              "(a list of users), not both")
    if "shared_with" in meta and (not isinstance(meta["shared_with"], list)
                                  or not all(isinstance(u, str) and NAME_RE.match(u) for u in meta["shared_with"])):
        raise InvalidArgument(f"{where}: field 'shared_with' must be a list of user names")
    if meta.get("kind", "ml") not in ("ml", "computational"):
        raise InvalidArgument(f"{where}: field 'kind' must be ml (default) or computational")
    if meta["type"] == "model" and meta.get("kind") == "computational":
        # A computational model is a recorded session (its code and steps), loaded to be edited and run.
        if "session" not in meta:
            raise InvalidArgument(f"{where}: a computational model needs field 'session' (a notebook in the folder)")
        _file_name(meta, "session", where)
    elif meta["type"] == "model":
        for key in MODEL_KEYS:
            if key not in meta:
                raise InvalidArgument(f"{where}: a model needs field '{key}'")
        if meta["framework"] not in FRAMEWORKS:
            raise InvalidArgument(f"{where}: field 'framework' must be one of {', '.join(FRAMEWORKS)}")
        _io(meta, "inputs", where)
        _io(meta, "outputs", where)
        for key in ("entry", "weights"):
            if key in meta:
                _file_name(meta, key, where)
    else:
        files = meta.get("files")
        if not isinstance(files, list) or not files:
            raise InvalidArgument(f"{where}: a dataset needs 'files', a list of file names in its folder")
        for f in files:
            _file_name({"f": f}, "f", where)
    return meta


def _file_name(meta: dict[str, Any], key: str, where: str) -> str:
    value = meta.get(key)
    if not isinstance(value, str) or not value or "/" in value or value.startswith(".") or "\x00" in value:
        raise InvalidArgument(f"{where}: field '{key}' must name a file in the package folder (got {value!r})")
    return value


def describe(path: str | os.PathLike | None = None, **fields: Any) -> dict[str, Any]:
    """Complete metadata for publishing: ``model.json`` of ``path`` (if any), then ``fields``,
    then ``uuid``, ``owner`` (this Unix user) and ``publication_date`` (today, UTC) filled in."""
    meta: dict[str, Any] = {}
    if path is not None:
        meta.update(read_metadata(Path(path), complete=False))
    meta.update({k: v for k, v in fields.items() if v is not None})
    meta["uuid"] = str(_uuid.uuid4())
    meta["owner"] = current_user()
    meta["publication_date"] = _dt.datetime.now(_dt.timezone.utc).date().isoformat()
    meta.setdefault("visibility", "private")
    return meta


def read_metadata(folder: Path, complete: bool = True) -> dict[str, Any]:
    """``folder/model.json``, parsed and validated (one-line errors)."""
    if not folder.is_dir():
        raise InvalidArgument(f"{folder}: not a folder (a model package is a folder with model.json)")
    f = folder / "model.json"
    if not f.is_file():
        raise InvalidArgument(f"{folder}: no model.json (see README: the model package format)")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{f}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"{f}: not valid JSON (line {e.lineno}: {e.msg})") from None
    return validate(meta, str(f), complete=complete)


def entry_defines(source: str, function: str = "load") -> bool:
    """Whether module source text defines a top-level function ``function`` (syntax only)."""
    tree = ast.parse(source)
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == function for n in tree.body)


def check_package(folder: Path, meta: dict[str, Any]) -> list[str]:
    """Check a package's files against its metadata; returns the files to publish."""
    if meta["type"] == "dataset":
        names = list(meta["files"])
    elif meta.get("kind") == "computational":
        names = [meta["session"]]
        try:
            nb = json.loads((folder / meta["session"]).read_text(encoding="utf-8"))
            if not isinstance(nb.get("cells"), list):
                raise ValueError
        except (OSError, ValueError, AttributeError):
            raise InvalidArgument(f"{folder}: session {meta['session']!r} is not a readable notebook (.ipynb)") from None
    else:
        names = [meta["entry"]] + ([meta["weights"]] if meta.get("weights") else [])
        entry = folder / meta["entry"]
        if not entry.is_file():
            raise InvalidArgument(f"{folder}: entry file {meta['entry']!r} named in model.json does not exist")
        try:
            ok = entry_defines(entry.read_text(encoding="utf-8"))
        except SyntaxError as e:
            raise InvalidArgument(f"{entry}: not valid Python (line {e.lineno}: {e.msg})") from None
        if not ok:
            raise InvalidArgument(f"{entry}: defines no function load(mode, device) (the entry function)")
    for name in names:
        if not (folder / name).is_file():
            raise InvalidArgument(f"{folder}: file {name!r} named in model.json does not exist")
    # Helper modules beside the entry travel with it (e.g. a network definition).
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix == ".py" and p.name not in names)
    return names + extra
