"""``%storage``, ``%copy_data``, ``%dataset``, ``%push_vars``, ``%pull_vars``: thin magics over the API.

``load(ip, manager)`` is called by ``airavata_magic.load_ipython_extension``. Arguments are split
the way a shell splits them (``--after-download "echo a; echo b"`` arrives without its quotes);
IPython's own ``parse_argstring`` would keep the quotes.
"""
from __future__ import annotations

import re
import shlex
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ..errors import InvalidArgument
from ..usage import user_errors

_STORAGE_ARITY = {"list": (0, 0), "ls": (1, 1), "register": (0, 0), "remove": (1, 1), "mount": (1, 1)}
_DATASET_ARITY = {"register": (0, 0), "list": (0, 0), "show": (1, 1), "remove": (1, 1), "load": (1, 1)}


def parse(magic: Callable, line: str) -> Any:
    """Parse a magic line with shell quoting rules (quotes removed, as in a terminal)."""
    try:
        argv = shlex.split(line)
    except ValueError as e:
        raise UsageError(f"cannot parse the arguments: {e}") from None
    return magic.parser.parse_args(argv)


def parse_size(text: str) -> int:
    """``1G``, ``512M``, ``100K`` or a number of bytes -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise InvalidArgument(f"--limit takes a size such as 512M, 2G or a number of bytes, got {text!r}")
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(m.group(1)) * units[m.group(2).upper()]


def _arity(kind: str, table: dict[str, tuple[int, int]], action: str, args: list[str], usage: str) -> None:
    lo, hi = table[action]
    if not lo <= len(args) <= hi:
        raise UsageError(f"%{kind} {action} takes {usage}")


@magics_class
class DataMagics(Magics):
    """Named storage, copies, datasets and variables between the notebook and runtimes."""

    def __init__(self, shell: Any, manager: Any) -> None:
        super().__init__(shell)
        self.manager = manager

    @magic_arguments()
    @argument("action", choices=list(_STORAGE_ARITY), help="what to do")
    @argument("args", nargs="*", help="ls NAME[:SUBPATH] | remove NAME | mount NAME")
    @argument("--name", help="register: the location's name")
    @argument("--location", help="register: a local path, sftp://user@host/path, RESOURCE:/path or an fsspec URL")
    @argument("--runtime", help="mount: the runtime that should see the location")
    @argument("--as", dest="as_path", help="mount: the link's path (relative = the kernel's working directory)")
    @argument("--file", help="the profile (cybershuttle.yml)")
    @line_magic
    @user_errors
    def storage(self, line: str) -> Any:
        """Named storage locations: list, ls, register, remove, mount."""
        from . import api

        a = parse(self.storage, line)
        usage = {"ls": "NAME[:SUBPATH]", "remove": "NAME", "mount": "NAME --runtime R [--as PATH]"}
        _arity("storage", _STORAGE_ARITY, a.action, a.args, usage.get(a.action, "no positional arguments"))
        if a.action == "list":
            return api.list_locations(a.file)
        if a.action == "ls":
            return api.ls(a.args[0], a.file, manager=self.manager)
        if a.action == "register":
            if not a.name or not a.location:
                raise UsageError("%storage register needs --name N --location L")
            loc = api.register(a.name, a.location, a.file)
            print(f"storage {loc.name!r} registered ({loc.kind}: {loc.location})")
        elif a.action == "remove":
            api.remove(a.args[0], a.file)
            print(f"storage {a.args[0]!r} removed")
        elif a.action == "mount":
            if not a.runtime:
                raise UsageError("%storage mount needs --runtime R")
            link = api.mount(a.args[0], a.runtime, a.as_path, file=a.file, manager=self.manager)
            print(f"storage {a.args[0]!r} is visible on {a.runtime!r} at {link}")
        return None

    @magic_arguments()
    @argument("src", help="local:PATH, STORAGE:PATH or RUNTIME:PATH")
    @argument("dst", help="local:PATH, STORAGE:PATH or RUNTIME:PATH")
    @argument("--recursive", "-r", action="store_true", help="copy a directory")
    @argument("--verify", action="store_true", help="compare sha256 of both sides (remote side computed there)")
    @argument("--jobs", type=int, default=4, help="files moved at once where files go one by one (default 4)")
    @argument("--file", help="the profile (cybershuttle.yml)")
    @line_magic
    @user_errors
    def copy_data(self, line: str) -> None:
        """Copy a file or directory: progress in place, atomic, resumable, optionally verified."""
        from .copying import copy

        a = parse(self.copy_data, line)
        result = copy(a.src, a.dst, recursive=a.recursive, verify=a.verify, jobs=a.jobs, file=a.file,
                      manager=self.manager)
        print(result)

    @magic_arguments()
    @argument("action", choices=list(_DATASET_ARITY), help="what to do")
    @argument("args", nargs="*", help="show NAME | remove NAME | load NAME")
    @argument("--name", help="register: the dataset's name")
    @argument("--location", help="register: STORAGE:PATH or an http(s) URL")
    @argument("--after-download", help="register: a shell command run once where the data lands")
    @argument("--sha256", help="register: the expected sha256 of a URL's content")
    @argument("--public", action="store_true", help="register: visible to everyone (shared registry)")
    @argument("--private", action="store_true", help="register: visible to you only (default)")
    @argument("--description", default="", help="register: one line about the data")
    @argument("--title", default="", help="register: a title (default: the name)")
    @argument("--domain", default="", help="register: the field, e.g. vision (a column of the listing)")
    @argument("--version", default="1.0", help="register: the data's version (default 1.0)")
    @argument("--runtime", help="load: the runtime whose resource gets the data")
    @argument("--as", dest="as_var", help="load: the variable set to the data's path (default: the name)")
    @argument("--file", help="the profile (cybershuttle.yml)")
    @line_magic
    @user_errors
    def dataset(self, line: str) -> Any:
        """Datasets: register, list, show, remove, load (read-only, cached by content where it runs)."""
        from . import datasets

        a = parse(self.dataset, line)
        _arity("dataset", _DATASET_ARITY, a.action, a.args, "NAME" if a.action in ("show", "remove", "load")
               else "no positional arguments")
        if a.public and a.private:
            raise UsageError("choose --public or --private, not both")
        if a.action == "register":
            if not a.name or not a.location:
                raise UsageError("%dataset register needs --name N --location STORAGE:PATH|URL")
            ds = datasets.register(a.name, a.location, after_download=a.after_download, sha256=a.sha256,
                                   public=a.public, description=a.description, title=a.title, domain=a.domain,
                                   version=a.version, file=a.file)
            print(f"dataset {ds.name!r} registered ({'public' if ds.public else 'private'})")
        elif a.action == "list":
            return datasets.list_datasets(a.file)
        elif a.action == "show":
            return datasets.show(a.args[0], a.file)
        elif a.action == "remove":
            datasets.remove(a.args[0], a.file)
            print(f"dataset {a.args[0]!r} removed")
        elif a.action == "load":
            if not a.runtime:
                raise UsageError("%dataset load needs --runtime R")
            var = a.as_var or datasets._identifier(a.args[0])
            path = datasets.load(a.args[0], a.runtime, var, file=a.file, manager=self.manager)
            print(f"dataset {a.args[0]!r} is at {path} on {a.runtime!r} (variable {var})")
        return None

    @magic_arguments()
    @argument("runtime", help="the runtime that receives the variables")
    @argument("names", nargs="+", help="notebook variables to send")
    @argument("--limit", default="1G", help="refuse more than this many bytes (default 1G)")
    @line_magic
    @user_errors
    def push_vars(self, line: str) -> None:
        """Send notebook variables to a runtime's kernel (pickle 5, out-of-band buffers)."""
        from .variables import push_vars

        a = parse(self.push_vars, line)
        ns = self.shell.user_ns
        missing = [n for n in a.names if n not in ns]
        if missing:
            raise UsageError(f"name {missing[0]!r} is not defined in this notebook")
        names = push_vars(a.runtime, limit=parse_size(a.limit), manager=self.manager, **{n: ns[n] for n in a.names})
        print(f"pushed {', '.join(names)} to {a.runtime!r}")

    @magic_arguments()
    @argument("runtime", help="the runtime that holds the variables")
    @argument("names", nargs="+", help="its variables to bring here")
    @argument("--as", dest="as_names", help="names here, comma-separated, one per pulled variable")
    @argument("--limit", default="1G", help="refuse more than this many bytes (default 1G)")
    @line_magic
    @user_errors
    def pull_vars(self, line: str) -> None:
        """Bring variables of a runtime's kernel into the notebook."""
        from .variables import pull_vars

        a = parse(self.pull_vars, line)
        targets = a.as_names.split(",") if a.as_names else list(a.names)
        if len(targets) != len(a.names) or not all(t.isidentifier() for t in targets):
            raise UsageError(f"--as needs {len(a.names)} Python name(s), comma-separated")
        values = pull_vars(a.runtime, a.names, limit=parse_size(a.limit), manager=self.manager)
        for src, dst in zip(a.names, targets):
            self.shell.user_ns[dst] = values[src]
        print(f"pulled {', '.join(f'{s} as {d}' if s != d else s for s, d in zip(a.names, targets))} "
              f"from {a.runtime!r}")


def load(ip: Any, manager: Any) -> None:
    """Register the data magics on ``ip``."""
    ip.register_magics(DataMagics(ip, manager))
