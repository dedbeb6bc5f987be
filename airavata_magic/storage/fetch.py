"""Finishes one dataset cache entry on a resource. Runs THERE, by the resource's own Python.

Sent as source (with ``archive.py`` before it) to ``python - ARGS_JSON``: it imports only the
standard library, so the resource needs nothing of this package. The entry becomes visible in one
atomic rename of a complete directory that already holds its marker, so a reader (or a second
load racing this one) never sees a half-prepared entry; file locks are not trusted on cluster file
systems (NFS, Lustre). Prints the entry's data directory as its last line.

Layout: ``CACHE/KEY/data/`` (read-only: no write bits on files or directories) and
``CACHE/KEY/dataset.json`` (the marker: what was loaded, from where, its sha256).
"""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile

if "extract" not in globals():  # imported as a module of the package, not sent as a script
    from .archive import UnsafeMember, extract  # noqa: F401

MARKER = "dataset.json"
ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


def _writable(path):
    for dirpath, dirnames, filenames in os.walk(path):
        os.chmod(dirpath, 0o700)
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o600)


def _read_only(path):
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) & ~0o222)
        os.chmod(dirpath, stat.S_IMODE(os.lstat(dirpath).st_mode) & ~0o222)


def _remove(path):
    if os.path.lexists(path):
        _writable(path)
        shutil.rmtree(path, ignore_errors=True)


def _unzip(src, target):
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            name = info.filename
            norm = os.path.normpath(name)
            if name.startswith("/") or norm == ".." or norm.startswith("../"):
                raise UnsafeMember(f"refused archive member: path {name!r} leaves the target")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeMember(f"refused archive member: link {name!r} in a zip")
        z.extractall(target)


def _download(url, dest, expected):
    h = hashlib.sha256()
    req = urllib.request.Request(url, headers={"User-Agent": "airavata-magic"})
    with urllib.request.urlopen(req, timeout=60) as r, open(dest, "wb") as f:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            f.write(chunk)
    got = h.hexdigest()
    if expected and got != expected.lower():
        raise ValueError(f"sha256 of {url} is {got}, expected {expected}")
    return got


def run(args):
    cache, key = args["cache"], args["key"]
    entry = os.path.join(cache, key)
    if os.path.isfile(os.path.join(entry, MARKER)):
        return os.path.join(entry, "data")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    tmp = args.get("tmp") or tempfile.mkdtemp(prefix=f".{key}.", dir=cache)
    try:
        data = os.path.join(tmp, "data")
        digest = args.get("sha256")
        url = args.get("url")
        if url:
            name = os.path.basename(urllib.parse.urlsplit(url).path) or "download"
            dl = os.path.join(tmp, ".download")
            digest = _download(url, dl, digest)
            os.makedirs(data, exist_ok=True)
            lower = name.lower()
            if lower.endswith(".zip"):
                _unzip(dl, data)
                os.remove(dl)
            elif lower.endswith(ARCHIVES):
                with open(dl, "rb") as f:
                    extract(f, data, refuse=True, stream=False)
                os.remove(dl)
            else:
                os.replace(dl, os.path.join(data, name))
        if args.get("after"):
            # shell=True on purpose: --after-download IS a shell command line the user wrote (the
            # contract: "a command to run after the download"), run as that user on their own resource;
            # no value of ours is interpolated into it.
            p = subprocess.run(args["after"], shell=True, cwd=data, capture_output=True, text=True)
            if p.returncode != 0:
                tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or [""]
                raise RuntimeError(f"--after-download exited {p.returncode}: {tail[0][:300]}")
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump({"name": args.get("name"), "source": url or args.get("source"), "sha256": digest}, f)
        _read_only(data)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, entry)
        except OSError:  # another load finished first: its entry is as good as ours
            if not os.path.isfile(os.path.join(entry, MARKER)):
                raise
            _remove(tmp)
        return os.path.join(entry, "data")
    except BaseException:
        _remove(tmp)
        raise


def main():
    try:
        print(run(json.loads(sys.argv[1])))
    except Exception as e:  # one line for the client; it is shown to the user as is
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
