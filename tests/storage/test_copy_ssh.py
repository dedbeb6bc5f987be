"""Copies against the real sshd of the test bed: sftp://, RESOURCE:/path, tar streams, remote cp,
remote sha256, a killed connection mid-copy and the rerun that resumes."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from airavata_magic import storage
from airavata_magic.errors import AiravataError, TransportError
from airavata_magic.storage.progress import NoProgress

from .conftest import remote
from .test_copy_local import WEIRD, Count

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def store(bed):
    """`hs`: a directory of the test bed's hpc resource; `sf`: the same host as sftp://."""
    remote(bed, "rm -rf am-store && mkdir -p am-store")
    storage.register("hs", "hpc:~/am-store")
    storage.register("sf", f"sftp://{bed.user}@{bed.host}:{bed.port}/home/{bed.user}/am-store")
    return bed


def test_sftp_location_reuses_the_resource_login(store):
    loc = storage.get("sf")
    assert loc.resource == "hpc" and loc.ssh["known_hosts"] == str(store.known_hosts)
    fs, root = storage.filesystem("hs")
    assert root == f"/home/{store.user}/am-store"
    fs.pipe(f"{root}/hello.txt", b"hello")
    assert storage.ls("sf:")["name"].tolist() == ["hello.txt"]


def test_file_both_ways_with_remote_sha256(store, tmp_path):
    data = os.urandom(12 << 20)
    (tmp_path / WEIRD).write_bytes(data)
    count = Count()
    up = storage.copy(f"local:{tmp_path / WEIRD}", f"hs:up/{WEIRD}", verify=True, progress=count)
    assert (up.method, up.verified) == ("sftp", True) and count.bytes == len(data)
    assert remote(store, "ls -A am-store/up") == WEIRD + "\n"  # nothing beside it
    down = storage.copy(f"sf:up/{WEIRD}", f"local:{tmp_path / 'back.bin'}", verify=True, progress=False)
    assert (tmp_path / "back.bin").read_bytes() == data and down.sha256 == up.sha256
    same = storage.copy(f"hs:up/{WEIRD}", "sf:copied.bin", verify=True, progress=False)
    assert same.method == "remote-cp" and same.verified


def test_verify_compares_for_real(store, tmp_path):
    (tmp_path / "v.txt").write_text("one")
    storage.copy(str(tmp_path / "v.txt"), "hs:v.txt", progress=False)
    from airavata_magic.storage.ends import resolve

    end = resolve("hs:v.txt")
    assert end.sha256(end.path) == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
    remote(store, "echo two > am-store/v2.txt")
    with pytest.raises(AiravataError, match="verify failed"):
        from airavata_magic.storage.copying import _verify, CopyResult

        _verify(resolve(str(tmp_path / "v.txt")), resolve("hs:v2.txt"), CopyResult("a", "b"), False)


def test_trees_travel_as_one_tar_stream(store, tmp_path):
    src = tmp_path / "many"
    (src / "sub dir").mkdir(parents=True)
    for i in range(200):
        (src / "sub dir" / f"f{i} {WEIRD}").write_bytes(b"x" * 4000)
    os.symlink("sub dir", src / "inside")
    os.symlink("/etc", src / "escape")
    r = storage.copy(str(src), "hs:many", recursive=True, verify=True, progress=False)
    assert (r.method, r.files, r.verified, r.skipped) == ("tar-stream", 200, True, ["escape"])
    assert remote(store, "readlink am-store/many/inside; ls am-store/many/'sub dir' | wc -l") == "sub dir\n200\n"
    back = storage.copy("hs:many", str(tmp_path / "back"), recursive=True, verify=True, progress=False)
    assert back.method == "tar-stream" and back.verified
    assert len(os.listdir(tmp_path / "back" / "sub dir")) == 200
    remote(store, "ln -s ../../../etc am-store/many/rel-escape && ln -s /etc am-store/many/abs-escape")
    again = storage.copy("hs:many", "sf:many2", recursive=True, verify=True, progress=False)
    assert again.method == "remote-cp" and again.verified
    assert again.skipped == ["abs-escape", "rel-escape"]
    assert remote(store, "cd am-store/many2 && ls -A | sort | tr '\\n' ' '") == "inside sub dir "
    down = storage.copy("hs:many", str(tmp_path / "back2"), recursive=True, progress=False)
    assert len(down.skipped) == 2 and all("points" in why for why in down.skipped)
    assert sorted(os.listdir(tmp_path / "back2")) == ["inside", "sub dir"]
    assert not (tmp_path / "pwned").exists()


def sshd_pids_of(client_port: int, server_port: int) -> list[int]:
    """PIDs of the processes (sshd's children) holding the server end of our TCP connection,
    found through /proc (no tool needed): the socket's inode, then who has it open."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local_port, remote_port = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16)
            if local_port == server_port and remote_port == client_port:
                inodes.add(f[9])
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes} for fd in fds):
                pids.append(int(pid))
        except OSError:
            continue
    return pids


class KillAfter(NoProgress):
    """Kills the sshd processes serving this copy's connection once ``limit`` bytes moved."""

    def __init__(self, fs, server_port: int, limit: int) -> None:
        self.fs, self.server_port, self.limit, self.seen, self.killed = fs, server_port, limit, 0, []

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.seen += nbytes
        if self.seen >= self.limit and not self.killed:
            port = self.fs.client.get_extra_info("sockname")[1]
            self.killed = [p for p in sshd_pids_of(port, self.server_port) if p != os.getpid()]
            for pid in self.killed:
                os.kill(pid, signal.SIGKILL)


def test_killed_sshd_mid_copy_then_rerun_resumes(store, tmp_path):
    data = os.urandom(96 << 20)
    remote(store, "head -c 0 /dev/null")  # the test bed answers before we start
    fs, root = storage.filesystem("hs")
    fs.pipe(f"{root}/big.bin", data)
    dst = tmp_path / "big.bin"
    killer = KillAfter(fs, store.port, 40 << 20)
    with pytest.raises(TransportError, match="run the copy again to resume"):
        storage.copy("hs:big.bin", f"local:{dst}", progress=killer)
    assert killer.killed, "no sshd process was found for the copy's connection"
    assert not dst.exists()
    r = storage.copy("hs:big.bin", f"local:{dst}", verify=True, progress=False)
    assert r.resumed_from >= 16 << 20 and r.verified
    assert dst.read_bytes() == data and os.listdir(tmp_path) == ["big.bin"]


def test_object_store_and_ssh_both_ways(store, tmp_path):
    storage.register("objs", "memory://am-ssh")
    fs, root = storage.filesystem("objs")
    for i in range(4):
        fs.pipe(f"{root}/t/f{i}.txt", str(i).encode() * 50)
    r = storage.copy("objs:t", "hs:from-objects", recursive=True, jobs=2, verify=True, progress=False)
    assert (r.method, r.files, r.verified) == ("fsspec", 4, True)
    assert remote(store, "cat am-store/from-objects/f2.txt") == "2" * 50
    back = storage.copy("hs:from-objects/f3.txt", "objs:back/f3.txt", verify=True, progress=False)
    assert back.verified and fs.cat(f"{root}/back/f3.txt") == b"3" * 50


def test_host_keys_are_verified_from_the_resources_known_hosts(store, tmp_path, monkeypatch):
    wrong = tmp_path / "known_hosts"
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong.write_text(f"[{store.host}]:{store.port} " + " ".join(other.with_suffix(".pub").read_text().split()[:2]) + "\n")
    profile = tmp_path / "cybershuttle.yml"
    profile.write_text(
        "resources:\n  spoofed:\n    kind: ssh\n"
        f"    host: {store.host}\n    port: {store.port}\n    user: {store.user}\n"
        f"    identity_file: {store.identity_file}\n    known_hosts: {wrong}\n"
        "storage:\n  guarded: {location: 'spoofed:/tmp'}\n")
    monkeypatch.setenv("AIRAVATA_MAGIC_PROFILE", str(profile))
    with pytest.raises(AiravataError, match="host key") as e:
        storage.ls("guarded:")
    assert "\n" not in str(e.value)
    wrong.unlink()
    with pytest.raises(AiravataError, match="known_hosts file .* not found: host keys are always verified"):
        storage.filesystem("guarded")


class InterruptMain(NoProgress):
    """Presses Ctrl-C (a real SIGINT to this process) once ``limit`` bytes have moved."""

    def __init__(self, limit: int) -> None:
        self.limit, self.seen, self.pressed = limit, 0, False

    def advance(self, nbytes: int = 0, files: int = 0) -> None:
        self.seen += nbytes
        if self.seen >= self.limit and not self.pressed:
            self.pressed = True
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_the_transfer_and_a_rerun_resumes(store, tmp_path):
    data = os.urandom(96 << 20)
    fs, root = storage.filesystem("hs")
    fs.pipe(f"{root}/ctrlc.bin", data)
    dst = tmp_path / "ctrlc.bin"
    with pytest.raises(KeyboardInterrupt):
        storage.copy("hs:ctrlc.bin", str(dst), progress=InterruptMain(16 << 20))
    (part,) = [p for p in tmp_path.iterdir() if p.name.startswith(".ctrlc.bin.part-")]
    size = part.stat().st_size
    assert 0 < size < len(data)
    storage.ls("hs:")  # a round trip later the cancelled transfer has written nothing more
    assert part.stat().st_size == size
    r = storage.copy("hs:ctrlc.bin", str(dst), verify=True, progress=False)
    assert r.resumed_from == size and r.verified and dst.read_bytes() == data
