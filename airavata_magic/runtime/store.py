"""``RuntimeStore``: this user's runtime records on disk, ``$AIRAVATA_MAGIC_HOME/runtimes/``.

One JSON record per runtime (``<name>.json``) plus a private directory per runtime
(``<name>.d/``: connection files, logs, and ``holders/``, one file per process that holds the
runtime). The store reads and writes; it decides nothing. ``RuntimeManager`` is its one writer of
records; any process registers itself as a holder.
"""
from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .. import paths
from ..errors import InvalidArgument, RuntimeNotFound
from .model import Runtime


IDLE_ENV = "AIRAVATA_MAGIC_IDLE_TIMEOUT"
DEFAULT_IDLE_S = 3600.0  # like a typical Enterprise Gateway cull_idle_timeout: one hour


def idle_limit() -> float:
    """Seconds a runtime may live with no notebook holding it: ``$AIRAVATA_MAGIC_IDLE_TIMEOUT``
    (seconds; ``0`` disables culling), default one hour. A bad value is an ``InvalidArgument``."""
    raw = os.environ.get(IDLE_ENV, "").strip()
    if not raw:
        return DEFAULT_IDLE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InvalidArgument(f"{IDLE_ENV}={raw!r}: give a number of seconds (0 disables ending idle runtimes)")
    return value


def _file_stem(name: str) -> str:
    return urllib.parse.quote(name, safe="-_.")


def _name_of(stem: str) -> str:
    return urllib.parse.unquote(stem)


@dataclass
class BrokenRecord:
    """A record file that cannot be read: listed with the reason, removed by ``stop``."""

    name: str
    path: Path
    reason: str
    #: what could still be read of it (to cancel its job), or {} when not even JSON
    raw: dict


def process_start(pid: int) -> str | None:
    """A process's start time in clock ticks (tells a pid from a reused one), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


class RuntimeStore:
    """The on-disk registry of this user's runtimes."""

    def __init__(self, root: Path | None = None) -> None:
        """``root`` defaults to ``$AIRAVATA_MAGIC_HOME``; records go to ``root/runtimes``."""
        self.root = paths.private_dir((root or paths.home()) / "runtimes")

    def record_path(self, name: str) -> Path:
        """Where the record of runtime ``name`` is kept."""
        return self.root / f"{_file_stem(name)}.json"

    def runtime_dir(self, name: str) -> Path:
        """Private (0700) directory for one runtime's local files."""
        return paths.private_dir(self.root / f"{_file_stem(name)}.d")

    # -- records ---------------------------------------------------------------------------
    def save(self, runtime: Runtime) -> None:
        """Write a record atomically (0600). Called by the manager only."""
        paths.write_json(self.record_path(runtime.name), runtime.to_json())

    def load(self, name: str) -> Runtime:
        """The record of ``name``; ``RuntimeNotFound`` if there is none or it cannot be read."""
        got = self._read(self.record_path(name))
        if isinstance(got, BrokenRecord):
            raise RuntimeNotFound(f"the record of runtime {name!r} is unreadable ({got.reason}); "
                                  f"%stop_runtime {name} removes it")
        return got

    def load_any(self, name: str) -> Runtime | BrokenRecord:
        """The record of ``name``, or what is known of it when unreadable."""
        return self._read(self.record_path(name))

    def _read(self, path: Path) -> Runtime | BrokenRecord:
        name = _name_of(path.name[: -len(".json")])
        try:
            raw = paths.read_json(path)
        except FileNotFoundError:
            raise RuntimeNotFound(f"no runtime named {name!r}; %runtimes lists them") from None
        except (OSError, ValueError) as e:
            return BrokenRecord(name, path, f"{type(e).__name__}: {e}", {})
        try:
            return Runtime.from_json(raw)
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            return BrokenRecord(name, path, f"{type(e).__name__}: {e}", raw if isinstance(raw, dict) else {})

    def exists(self, name: str) -> bool:
        """Is there a record (readable or not) for ``name``?"""
        return self.record_path(name).exists()

    def all(self) -> Iterator[Runtime]:
        """Every readable record, by name."""
        for item in self.all_records():
            if isinstance(item, Runtime):
                yield item

    def all_records(self) -> Iterator[Runtime | BrokenRecord]:
        """Every record, unreadable ones as ``BrokenRecord``."""
        for p in sorted(self.root.glob("*.json")):
            try:
                yield self._read(p)
            except RuntimeNotFound:
                continue  # removed meanwhile

    def forget(self, name: str) -> None:
        """Remove a runtime's record and its private directory."""
        self.record_path(name).unlink(missing_ok=True)
        shutil.rmtree(self.root / f"{_file_stem(name)}.d", ignore_errors=True)

    # -- holders: processes (notebooks) that hold a runtime ---------------------------------
    def holders_dir(self, name: str) -> Path:
        """One file per holding process, named by pid, holding its start time."""
        return paths.private_dir(self.runtime_dir(name) / "holders")

    def hold(self, name: str, pid: int | None = None) -> None:
        """Register ``pid`` (default: this process) as a holder of ``name``."""
        pid = pid or os.getpid()
        paths.write_private(self.holders_dir(name) / str(pid),
                            json.dumps({"pid": pid, "start": process_start(pid)}), fsync=False)

    def release(self, name: str, pid: int | None = None) -> None:
        """This process (or ``pid``) no longer holds ``name``."""
        d = self.root / f"{_file_stem(name)}.d" / "holders"
        (d / str(pid or os.getpid())).unlink(missing_ok=True)

    def holders(self, name: str) -> list[int]:
        """Pids of live processes that hold ``name`` (files of ended processes are removed)."""
        d = self.root / f"{_file_stem(name)}.d" / "holders"
        live = []
        for f in sorted(d.glob("*")) if d.is_dir() else []:
            try:
                info = json.loads(f.read_text())
                pid, start = int(info["pid"]), info.get("start")
            except (OSError, ValueError, KeyError, TypeError):
                f.unlink(missing_ok=True)
                continue
            if process_start(pid) is not None and process_start(pid) == start:
                live.append(pid)
            else:
                f.unlink(missing_ok=True)
        return live
