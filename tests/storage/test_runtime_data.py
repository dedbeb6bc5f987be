"""Data on a real Slurm runtime of the test bed: RUNTIME:relative copies, mount, datasets loaded
read-only in the resource's cache (URL fetched there, archives checked), variables both ways."""
from __future__ import annotations

import hashlib
import io
import tarfile
import time

import pytest

from airavata_magic import storage
from airavata_magic.errors import AiravataError, InvalidArgument
from airavata_magic.storage import dataset

from .conftest import remote

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def rt(bed, manager):
    """One Slurm runtime for the module; its kernel runs in the test user's home."""
    manager.request("data_rt", resource="hpc", overrides={"cpus": 1, "memory": "256M", "walltime": 10})
    manager.wait("data_rt", timeout=180)
    remote(bed, "rm -rf am-rt am-rt-store && mkdir -p am-rt-store")
    storage.register("rts", "hpc:~/am-rt-store")
    return "data_rt"


def run(manager, name: str, code: str) -> str:
    from airavata_magic.storage.variables import QuietSink

    sink = QuietSink()
    (out,) = manager.run([name], code, sink, silent=False)
    assert out.status == "ok", out.error
    return "".join(sink.streams)


def _tar(path, members) -> None:
    with tarfile.open(path, "w:gz") as t:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def test_runtime_relative_paths_are_the_kernels_working_directory(rt, bed, manager, tmp_path):
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    r = storage.copy(str(tmp_path / "in.csv"), f"{rt}:am-rt/in.csv", verify=True, manager=manager, progress=False)
    assert r.dst == f"/home/{bed.user}/am-rt/in.csv" and r.verified
    assert run(manager, rt, "print(open('am-rt/in.csv').read(), end='')") == "a,b\n1,2\n"
    storage.copy(f"{rt}:am-rt/in.csv", "rts:from-rt.csv", manager=manager, progress=False)  # same host: cp
    assert remote(bed, "cat am-rt-store/from-rt.csv") == "a,b\n1,2\n"


def test_mount_links_reachable_storage_and_refuses_the_rest(rt, bed, manager, tmp_path):
    link = storage.mount("rts", rt, "am-rt/mounted", manager=manager)
    assert link == f"/home/{bed.user}/am-rt/mounted"
    assert run(manager, rt, "import os; print(sorted(os.listdir('am-rt/mounted')))").strip().startswith("[")
    storage.register("elsewhere", str(tmp_path))
    with pytest.raises(InvalidArgument, match="cannot reach storage 'elsewhere' directly; copy instead"):
        storage.mount("elsewhere", rt, manager=manager)


def test_url_dataset_is_fetched_there_read_only_and_cached(rt, bed, manager, www):
    root, base = www
    _tar(root / "good.tar.gz", [(tarfile.TarInfo("d/a.txt"), b"hello")])
    digest = hashlib.sha256((root / "good.tar.gz").read_bytes()).hexdigest()
    dataset.register("good", f"{base}/good.tar.gz", sha256=digest, after_download='echo "a; b" > made.txt')
    path = dataset.load("good", rt, "gd", manager=manager)
    assert path.startswith(f"/home/{bed.user}/.airavata-magic/datasets/good-")
    assert run(manager, rt, "print(open(gd + '/d/a.txt').read(), open(gd + '/made.txt').read(), end='')") \
        == "hello a; b\n"
    modes = remote(bed, f"stat -c '%A %n' {path} {path}/d {path}/d/a.txt {path}/made.txt")
    assert all("w" not in line.split()[0] for line in modes.splitlines()), modes
    (root / "good.tar.gz").unlink()  # a cache hit must not touch the web again
    t0 = time.monotonic()
    assert dataset.load("good", rt, "gd2", manager=manager) == path
    assert time.monotonic() - t0 < 2.0
    assert run(manager, rt, "print(gd2 == gd)") == "True\n"


@pytest.mark.parametrize("case, message", [
    ("dotdot", "path '../evil.txt' leaves the target"),
    ("absolute", "absolute path '/tmp/am-evil'"),
    ("symlink", "link 'd/out' points outside the target"),
    ("badsha", "sha256 of"),
    ("after", "--after-download exited 7"),
])
def test_bad_datasets_are_refused_and_leave_no_entry(rt, bed, manager, www, case, message):
    root, base = www
    members = {
        "dotdot": [(tarfile.TarInfo("../evil.txt"), b"x")],
        "absolute": [(tarfile.TarInfo("/tmp/am-evil"), b"x")],
        "symlink": [(tarfile.TarInfo("d/ok.txt"), b"ok")],
        "badsha": [(tarfile.TarInfo("ok.txt"), b"ok")],
        "after": [(tarfile.TarInfo("ok.txt"), b"ok")],
    }[case]
    if case == "symlink":
        link = tarfile.TarInfo("d/out")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc"
        members.append((link, None))
    _tar(root / f"{case}.tar.gz", members)
    dataset.register(f"bad-{case}", f"{base}/{case}.tar.gz", sha256="0" * 64 if case == "badsha" else None,
                     after_download="exit 7" if case == "after" else None)
    with pytest.raises(AiravataError, match=message):
        dataset.load(f"bad-{case}", rt, manager=manager)
    leftovers = remote(bed, "ls -A .airavata-magic/datasets | grep -c bad_ || true")
    assert leftovers.strip() == "0"
    assert remote(bed, "ls /tmp/am-evil 2>/dev/null; ls ~/evil.txt 2>/dev/null; true") == ""


def test_storage_dataset_copies_once(rt, bed, manager):
    remote(bed, "mkdir -p am-rt-store/tree/sub && echo one > am-rt-store/tree/sub/1.txt")
    dataset.register("tree", "rts:tree", description="a tree on the cluster")
    shown = dataset.show("tree")
    assert shown["location"] == "rts:tree" and shown["public"] is False
    path = dataset.load("tree", rt, manager=manager, progress=False)
    assert run(manager, rt, "print(open(tree + '/tree/sub/1.txt').read(), end='')") == "one\n"
    assert dataset.load("tree", rt, manager=manager) == path  # cache hit
    remote(bed, "echo two > am-rt-store/tree/sub/2.txt")  # deep inside: the top directory's mtime stays
    changed = dataset.load("tree", rt, manager=manager)
    assert changed != path  # changed at the source: a new entry
    assert run(manager, rt, "print(open(tree + '/tree/sub/2.txt').read(), end='')") == "two\n"


def test_variables_both_ways_on_slurm(rt, manager):
    values = {"n": 42, "text": "x" * 10_000, "blob": bytes(range(256)) * 4096, "nested": {"a": [1, 2.5, None]}}
    assert storage.push_vars(rt, manager=manager, **values) == sorted(values)
    assert run(manager, rt, "print(n + len(blob), nested['a'][1])") == f"{42 + 256 * 4096} 2.5\n"
    run(manager, rt, "made = [i * i for i in range(1000)]")
    got = storage.pull_vars(rt, ["made", "nested"], manager=manager)
    assert got["made"][999] == 998001 and got["nested"] == values["nested"]
    with pytest.raises(AiravataError, match="name 'nope' is not defined"):
        storage.pull_vars(rt, ["nope"], manager=manager)
    run(manager, rt, "import threading; lock = threading.Lock()")
    with pytest.raises(AiravataError, match="'lock' cannot be pickled"):
        storage.pull_vars(rt, ["made", "lock"], manager=manager)
    with pytest.raises(AiravataError, match="over the limit of 1000 bytes.*%copy_data"):
        storage.pull_vars(rt, ["blob"], manager=manager, limit=1000)
