"""Copies on this machine: atomic, resumable after an interruption, links never followed out."""
from __future__ import annotations

import os
import stat

import pytest

from airavata_magic import storage
from airavata_magic.errors import AiravataError, InvalidArgument
from airavata_magic.storage.progress import NoProgress

WEIRD = "a b 'q' \"d\" $(touch pwned);`x`|&.txt"


class StopAfter(NoProgress):
    """Interrupts a copy (as Ctrl-C would) once ``limit`` bytes have moved."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen = limit, 0

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.seen += nbytes
        if self.seen >= self.limit:
            raise KeyboardInterrupt


class Count(NoProgress):
    def __init__(self) -> None:
        self.bytes = self.files = 0
        self.total = None

    def start(self, total_bytes, total_files, label) -> None:
        self.total = (total_bytes, total_files)

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.bytes += nbytes
        self.files += files


def test_interrupted_copy_leaves_destination_and_rerun_resumes(home, tmp_path):
    src, dst = tmp_path / "big.bin", tmp_path / "out" / "big.bin"
    data = os.urandom(40 << 20)
    src.write_bytes(data)
    dst.parent.mkdir()
    dst.write_bytes(b"old content")
    with pytest.raises(KeyboardInterrupt):
        storage.copy(f"local:{src}", f"local:{dst}", progress=StopAfter(20 << 20))
    assert dst.read_bytes() == b"old content"  # untouched until the rename
    parts = [p for p in os.listdir(dst.parent) if p != "big.bin"]
    assert len(parts) == 1 and parts[0].startswith(".big.bin.part-")
    count = Count()
    r = storage.copy(f"local:{src}", f"local:{dst}", verify=True, progress=count)
    assert r.resumed_from >= 8 << 20 and r.verified is True
    assert dst.read_bytes() == data
    assert os.listdir(dst.parent) == ["big.bin"]  # nothing left beside it
    assert count.total == (len(data), 1) and count.bytes == len(data) and count.files == 1
    assert not any((home / "copies").iterdir())  # resume record gone


def test_resume_refuses_a_partial_file_whose_prefix_differs(home, tmp_path):
    src, dst = tmp_path / "s.bin", tmp_path / "d.bin"
    src.write_bytes(os.urandom(24 << 20))
    with pytest.raises(KeyboardInterrupt):
        storage.copy(str(src), str(dst), progress=StopAfter(8 << 20))
    (part,) = [p for p in tmp_path.iterdir() if p.name.startswith(".d.bin.part-")]
    with open(part, "r+b") as f:
        f.write(b"corrupted")
    r = storage.copy(str(src), str(dst), verify=True, progress=False)
    assert r.resumed_from == 0 and dst.read_bytes() == src.read_bytes()


def test_trees_copy_names_intact_and_skip_links_out_of_the_tree(home, tmp_path):
    src = tmp_path / "tree"
    (src / "sub dir").mkdir(parents=True)
    (src / "sub dir" / WEIRD).write_text("weird")
    (src / "plain.txt").write_text("plain")
    os.symlink("sub dir", src / "inside-link")
    os.symlink("/etc/passwd", src / "escape-abs")
    os.symlink("../../outside", src / "sub dir" / "escape-rel")
    out = tmp_path / "copy"
    out.mkdir()
    r = storage.copy(f"local:{src}", f"local:{out}", recursive=True, verify=True, progress=False)
    got = out / "tree"  # an existing directory receives the source under its own name
    assert r.dst == str(got) and r.verified
    assert (got / "sub dir" / WEIRD).read_text() == "weird"
    assert os.readlink(got / "inside-link") == "sub dir"
    assert not os.path.lexists(got / "escape-abs") and not os.path.lexists(got / "sub dir" / "escape-rel")
    assert sorted(r.skipped) == ["escape-abs", os.path.join("sub dir", "escape-rel")]
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")


def test_modes_are_kept_and_bad_requests_are_one_line(home, tmp_path):
    src = tmp_path / "run.sh"
    src.write_text("#!/bin/sh\n")
    src.chmod(0o750)
    storage.copy(str(src), str(tmp_path / "run2.sh"), progress=False)
    assert stat.S_IMODE((tmp_path / "run2.sh").stat().st_mode) == 0o750
    with pytest.raises(InvalidArgument, match="add --recursive"):
        storage.copy(str(tmp_path), str(tmp_path / "x"), progress=False)
    with pytest.raises(InvalidArgument, match="no such file"):
        storage.copy(str(tmp_path / "missing"), str(tmp_path / "x"), progress=False)
    with pytest.raises(InvalidArgument, match="invalid --jobs 0: must be between 1 and 64"):
        storage.copy(str(src), str(tmp_path / "x"), jobs=0, progress=False)
    with pytest.raises(AiravataError, match="neither a storage location nor a runtime"):
        storage.copy("nosuch:x", str(tmp_path / "x"), progress=False)


def test_object_store_urls_go_through_fsspec(home, tmp_path):
    storage.register("objects", "memory://am-copy")
    (tmp_path / "t").mkdir()
    for i in range(5):
        (tmp_path / "t" / f"f{i}.txt").write_text(str(i) * 100)
    r = storage.copy(str(tmp_path / "t"), "objects:t", recursive=True, jobs=3, verify=True, progress=False)
    assert (r.method, r.files, r.verified) == ("fsspec", 5, True)
    back = storage.copy("objects:t/f3.txt", str(tmp_path / "f3.txt"), verify=True, progress=False)
    assert back.verified and (tmp_path / "f3.txt").read_text() == "3" * 100
