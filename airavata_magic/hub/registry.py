"""The hub: models and datasets published into a storage location, one folder per entry.

Layout under the hub's root (``<kind>`` is ``models`` or ``datasets``)::

    <kind>/                          mode 1777: every user adds their own folder, none removes another's
      <owner>/                       0755, owned by <owner>
        <name>/<version>/            public entries: 0755 dirs, 0644 files
        .shared-g-<group>/<name>/<version>/   shared with a Unix group: 0750/0640, that group
        .shared-u-<hash>/<name>/<version>/    shared with users: 0700/0600 + one ACL entry per user
        .private/<name>/<version>/   private: 0700/0600

Visibility is what the file system lets each user read: search lists only the entries whose
``model.json`` this process can open, so a private entry of one user is invisible to another
however the client is changed. The owner shown is the Unix owner of the owner's folder (a folder
named after someone else is ignored). Publishing copies into a temporary folder beside the target
and renames it into place: a failed publish leaves nothing visible.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import paths
from ..errors import InvalidArgument
from ..storage import catalog
from . import package
from .access import Access, access_for, apply, is_local, sftp_call

if TYPE_CHECKING:
    import pandas as pd

KINDS = {"model": "models", "dataset": "datasets"}
COLUMNS = catalog.COLUMNS  # the same table as %dataset list: AstroHub's metadata plus location


def _version_key(version: str) -> tuple:
    """Sort 1.10 after 1.9: numeric parts compare as numbers."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in version.replace("-", ".").split("."))


class Entry(dict):
    """One hub entry: its metadata, plus ``path`` (its folder in the hub's file system)."""

    @property
    def path(self) -> str:
        return self["path"]


class Hub:
    """A model and dataset hub in one storage location, searched as DataFrames.

    ``Hub.from_profile()`` opens the hub the profile names (``hub: {storage: NAME}``);
    ``Hub(fs, root)`` opens any fsspec filesystem and root path. ``file`` is the profile whose
    registered datasets (``%dataset register``) the hub also lists and accepts by name; ``storage``
    the storage name the hub lives in (entries' ``location`` is then ``STORAGE:PATH``).
    """

    def __init__(self, fs: Any, root: str, *, file: str | None = None, storage: str | None = None) -> None:
        self.fs = fs
        self.root = root.rstrip("/") or "/"
        self.user = package.current_user()
        self.file, self.storage = file, storage

    @classmethod
    def from_profile(cls, file: str | None = None) -> "Hub":
        """The hub named by the profile (``--file F`` or the usual search order)."""
        from ..profile import load_profile
        from .location import hub_storage_name, resolve

        profile = load_profile(file)
        fs, root = resolve(profile)
        return cls(fs, root, file=file, storage=hub_storage_name(profile))

    # -- metadata --------------------------------------------------------------------------
    @staticmethod
    def describe(path: str | os.PathLike | None = None, **fields: Any) -> dict[str, Any]:
        """Complete metadata for ``publish``: ``path``'s model.json, then ``fields``, then uuid,
        owner and publication date filled in (see ``package.describe``)."""
        return package.describe(path, **fields)

    # -- publish ---------------------------------------------------------------------------
    def publish(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None, *,
                visibility: str | None = None, group: str | None = None,
                shared_with: list[str] | None = None) -> Entry:
        """Publish the package (or dataset) folder ``path``; returns the published entry.

        ``metadata`` overrides ``model.json``'s fields; uuid, owner and date are always filled
        here. ``visibility`` is public, private (default) or shared: with ``group`` (a Unix group)
        or ``shared_with`` (user names, by POSIX ACL). See ``access`` for what each means on disk.
        """
        folder = Path(path).expanduser()
        fields = dict(metadata or {})
        if visibility is not None:
            fields["visibility"] = visibility
        if group is not None:
            fields["group"] = group
        if shared_with is not None:
            fields["shared_with"] = list(shared_with)
        meta = package.describe(folder, **fields)
        package.validate(meta, f"{folder}/model.json")
        access = access_for(meta, self.fs)
        files = package.check_package(folder, meta)
        for other in self._owner_entries(meta["type"], meta["name"]):
            if other["version"] == meta["version"]:
                raise InvalidArgument(f"{meta['type']} {meta['name']} {meta['version']} is already published "
                                      f"({other['visibility']}); raise 'version' in model.json")
        bucket = self._bucket(meta["type"], access)
        target = f"{bucket}/{meta['name']}/{meta['version']}"
        tmp = f"{bucket}/{meta['name']}/.publishing-{secrets.token_hex(4)}"
        self._mkdir(f"{bucket}/{meta['name']}", access)
        try:
            self._mkdir(tmp, access)
            for name in files:
                self.fs.put_file(str(folder / name), f"{tmp}/{name}")
                apply(self.fs, f"{tmp}/{name}", access, is_dir=False)
            self.fs.pipe_file(f"{tmp}/model.json", json.dumps(meta, indent=1, sort_keys=True).encode())
            apply(self.fs, f"{tmp}/model.json", access, is_dir=False)
            self._rename(tmp, target)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp, recursive=True)
            raise
        return Entry(meta, path=target)

    def _bucket(self, type_: str, access: Access) -> str:
        kind = f"{self.root}/{KINDS[type_]}"
        if not self.fs.exists(kind):
            self._mkdir(kind, Access("", 0o1777, 0o644))  # the first publisher opens it to all, sticky
        mine = f"{kind}/{self.user}"
        self._mkdir(mine, Access("", 0o755, 0o644))
        if not access.bucket:
            return mine
        self._mkdir(f"{mine}/{access.bucket}", access)
        return f"{mine}/{access.bucket}"

    def _mkdir(self, path: str, access: Access) -> None:
        if not self.fs.exists(path):
            self.fs.makedirs(path, exist_ok=True)
        apply(self.fs, path, access, is_dir=True)

    def _rename(self, src: str, dst: str) -> None:
        """One atomic rename (a reader sees the whole entry or none of it)."""
        if is_local(self.fs):
            os.rename(src, dst)
        elif hasattr(self.fs, "ftp"):
            self.fs.ftp.posix_rename(src, dst)
        elif type(self.fs).__module__.startswith("sshfs"):
            sftp_call(self.fs, "posix_rename", src, dst)
        else:
            self.fs.mv(src, dst, recursive=True)

    # -- search ----------------------------------------------------------------------------
    def _list(self, path: str) -> list[str]:
        try:
            return [p["name"] if isinstance(p, dict) else p for p in self.fs.ls(path, detail=False)]
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            return []

    def _owner_ok(self, owner_dir: str, owner: str) -> bool:
        """The folder named after ``owner`` really belongs to that user (local file systems)."""
        if not is_local(self.fs):
            return True
        try:
            return pwd.getpwuid(os.stat(owner_dir).st_uid).pw_name == owner
        except (KeyError, OSError):
            return False

    def _entries(self, type_: str, owners: list[str] | None = None) -> list[Entry]:
        kind = f"{self.root}/{KINDS[type_]}"
        out: list[Entry] = []
        for owner_dir in self._list(kind):
            owner = owner_dir.rstrip("/").rsplit("/", 1)[-1]
            if owners is not None and owner not in owners or not self._owner_ok(owner_dir, owner):
                continue
            buckets = [owner_dir] + [p for p in self._list(owner_dir)
                                     if p.rsplit("/", 1)[-1].startswith((".private", ".shared-"))]
            for bucket in buckets:
                for name_dir in self._list(bucket):
                    if name_dir.rsplit("/", 1)[-1].startswith("."):
                        continue
                    for version_dir in self._list(name_dir):
                        if version_dir.rsplit("/", 1)[-1].startswith("."):
                            continue
                        entry = self._read_entry(version_dir, owner)
                        if entry is not None and entry["type"] == type_:
                            out.append(entry)
        return out

    def _read_entry(self, version_dir: str, owner: str) -> Entry | None:
        try:
            meta = json.loads(self.fs.cat_file(f"{version_dir}/model.json"))
            package.validate(meta, version_dir)
        except (OSError, ValueError, InvalidArgument):
            return None  # unreadable to this user (not visible), or not a hub entry
        meta["owner"] = owner  # the file system's word, not the JSON's
        return Entry(meta, path=version_dir)

    def _owner_entries(self, type_: str, name: str) -> list[Entry]:
        return [e for e in self._entries(type_, [self.user]) if e["name"] == name]

    def location_of(self, entry: Entry) -> str:
        """Where an entry's files live: ``STORAGE:PATH`` when the hub is a named storage, else its path."""
        if self.storage and entry.path.startswith(self.root.rstrip("/") + "/"):
            return f"{self.storage}:{entry.path[len(self.root.rstrip('/')) + 1:]}"
        return entry.path

    def search(self, type_: str = "model", *, name: str | None = None, owner: str | None = None,
               domain: str | None = None, version: str | None = None, only_latest: bool = False) -> "pd.DataFrame":
        """Visible entries of one type as a DataFrame (columns ``COLUMNS``, the same as ``%dataset
        list``); filters match case-insensitively, ``name`` and ``domain`` as substrings. Datasets
        include those registered with ``%dataset register`` (their ``location`` is their storage
        path or URL). Empty result: empty DataFrame."""
        if type_ not in KINDS:
            raise InvalidArgument(f"unknown entry type {type_!r}; use model or dataset")
        rows = [{c: e.get(c, "") for c in COLUMNS} | {"location": self.location_of(e)}
                for e in self._entries(type_, [owner] if owner else None)]
        if type_ == "dataset":
            from ..storage import dataset

            rows += [r for r in dataset.list_datasets(self.file).to_dict("records") if not owner or r["owner"] == owner]
        rows = [r for r in rows if (not name or name.lower() in r["name"].lower())
                and (not domain or domain.lower() in str(r["domain"]).lower())
                and (not version or r["version"] == version)]
        rows.sort(key=lambda r: (r["name"], r["owner"], _version_key(r["version"])))
        if only_latest:
            latest: dict[tuple[str, str], dict] = {}
            for r in rows:
                latest[(r["name"], r["owner"])] = r
            rows = list(latest.values())
        return catalog.frame(rows)

    def search_models(self, name: str | None = None, owner: str | None = None, domain: str | None = None,
                      version: str | None = None, only_latest: bool = False) -> "pd.DataFrame":
        """Models this user can see, as a DataFrame (see ``search``)."""
        return self.search("model", name=name, owner=owner, domain=domain, version=version, only_latest=only_latest)

    def search_datasets(self, name: str | None = None, owner: str | None = None, domain: str | None = None,
                        version: str | None = None, only_latest: bool = False) -> "pd.DataFrame":
        """Datasets this user can see, as a DataFrame with the same columns as ``search_models``."""
        return self.search("dataset", name=name, owner=owner, domain=domain, version=version, only_latest=only_latest)

    # -- one entry -------------------------------------------------------------------------
    def get(self, ref: str, type_: str = "model") -> Entry:
        """One visible entry by ``NAME``, ``NAME:VERSION``, ``OWNER/NAME[:VERSION]`` or uuid;
        the latest version when none is given."""
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidArgument(f"a {type_} reference is NAME, NAME:VERSION, OWNER/NAME or a uuid")
        owner, _, rest = ref.rpartition("/")
        name, _, version = rest.partition(":")
        found = [e for e in self._entries(type_, [owner] if owner else None)
                 if e["uuid"] == ref or (e["name"] == name and (not version or e["version"] == version))]
        if not found:
            raise InvalidArgument(f"no {type_} {ref!r} visible in the hub at {self.root} "
                                  f"({'%model list --datasets' if type_ == 'dataset' else '%model list'} shows "
                                  "what you can see)")
        owners = sorted({e["owner"] for e in found})
        if len(owners) > 1:
            raise InvalidArgument(f"{type_} {ref!r} is published by {', '.join(owners)}: write OWNER/{name}")
        return max(found, key=lambda e: _version_key(e["version"]))

    def fetch(self, ref: str, type_: str = "model") -> Path:
        """A local folder with the entry's files (the hub folder itself when the hub is local,
        else a private cache under ``$AIRAVATA_MAGIC_HOME/hub-cache/<uuid>``)."""
        entry = self.get(ref, type_)
        if is_local(self.fs):
            return Path(entry.path)
        dest = paths.home() / "hub-cache" / entry["uuid"]
        if not (dest / "model.json").is_file():
            tmp = paths.private_dir(dest.parent / f".{entry['uuid']}-{secrets.token_hex(4)}")
            try:
                for f in self._list(entry.path):
                    self.fs.get_file(f, str(tmp / f.rsplit("/", 1)[-1]))
                os.replace(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def run(self, model: str, data: str, cpu: int | None = None, gpu: int | None = None, node: str | None = None, *,
            runtime: str | None = None, output: str | None = None, batch_size: int = 32, device: str = "auto",
            file: str | None = None) -> "pd.DataFrame":
        """Inference of ``model`` over ``data`` (a folder of .npy inputs, or a dataset of them:
        registered with ``%dataset`` or published in the hub);
        returns the predictions DataFrame (``Results.json``'s figures in ``df.attrs["results"]``).

        With ``cpu``/``gpu``/``node``, ``runtime`` names a preset: a runtime with those resources
        is requested for this run and stopped after it. Otherwise ``runtime`` is a live runtime,
        or None for this process."""
        from . import inference

        from .resolve import registered_folder

        folder = data
        sized = cpu is not None or gpu is not None or node is not None
        if not Path(data).expanduser().exists():
            # A registered dataset is prepared where the run reads it: the live runtime's resource
            # (its cache there), or this machine for in-process runs and newly requested runtimes.
            where = runtime if runtime and runtime != "local" and not sized else None
            found = registered_folder(data, file or self.file, where)
            try:
                folder = str(found if found is not None else self.fetch(data, "dataset"))
            except InvalidArgument:
                raise InvalidArgument(f"data {data!r} is neither a folder nor a dataset you can see "
                                      "(%dataset list, %model list --datasets)") from None
        if sized:
            if not runtime:
                raise InvalidArgument("cpu=, gpu= and node= size a runtime requested for the run: name its preset "
                                      "with runtime=")
            return inference.run_on_new_runtime(model, folder, output, preset=runtime, cpu=cpu, gpu=gpu, node=node,
                                                batch_size=batch_size, device=device, file=file)
        return inference.run(model, folder, output, runtime=runtime, batch_size=batch_size, device=device, file=file)

    def remove(self, ref: str, type_: str = "model") -> str:
        """Delete one of this user's own entries (the file system refuses anyone else's)."""
        entry = self.get(ref, type_)
        if entry["owner"] != self.user:
            raise InvalidArgument(f"{type_} {ref!r} belongs to {entry['owner']}; only its owner can remove it")
        self.fs.rm(entry.path, recursive=True)
        return f"removed {type_} {entry['name']} {entry['version']}"
