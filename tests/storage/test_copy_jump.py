"""Storage behind a bastion (``proxy_jump``) against the real sshd of the test bed, which is also
its own jump host: bulk bytes through an asyncssh tunnel, commands through paramiko's jump."""
from __future__ import annotations

import os

import pytest

from airavata_magic import storage
from airavata_magic.errors import AiravataError
from airavata_magic.transport.ssh import connection_for

from .conftest import remote

pytestmark = pytest.mark.slurm


def jumped_profile(bed, path, host: str, known) -> None:
    """A profile whose ssh resource ``jumpy`` (``host`` on the test bed's port) is reached through
    the test bed's sshd as its proxy_jump."""
    path.write_text(
        "resources:\n  jumpy:\n    kind: ssh\n"
        f"    host: {host}\n    port: {bed.port}\n    user: {bed.user}\n"
        f"    identity_file: {bed.identity_file}\n    known_hosts: {known}\n"
        f"    proxy_jump: {bed.user}@{bed.host}:{bed.port}\n")


@pytest.fixture(scope="module")
def jumped(bed, tmp_path_factory):
    """`jh`: a directory of `jumpy`; `jsf`: the same through sftp://, which inherits the jump."""
    profile = tmp_path_factory.mktemp("jump") / "cybershuttle.yml"
    jumped_profile(bed, profile, bed.host, bed.known_hosts)
    remote(bed, "rm -rf am-jump && mkdir -p am-jump")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRAVATA_MAGIC_PROFILE", str(profile))
        storage.register("jh", "jumpy:~/am-jump")
        storage.register("jsf", f"sftp://{bed.user}@{bed.host}:{bed.port}/home/{bed.user}/am-jump")
        yield bed


def test_copy_both_ways_and_list_through_the_jump_host(jumped, tmp_path):
    jump = f"{jumped.user}@{jumped.host}:{jumped.port}"
    loc, sftp = storage.get("jh"), storage.get("jsf")
    assert loc.ssh["proxy_jump"] == jump and loc.target().proxy_jump == jump
    assert sftp.resource == "jumpy" and sftp.ssh == loc.ssh
    fs, root = storage.filesystem("jh")
    assert root == f"/home/{jumped.user}/am-jump"
    assert fs.client.get_extra_info("peername") == ("", 0)  # a channel of the bastion, not a TCP socket
    assert storage.filesystem("jsf")[0] is fs  # one tunnelled connection, found again in fsspec's cache

    data = os.urandom(3 << 20)
    (tmp_path / "up.bin").write_bytes(data)
    up = storage.copy(str(tmp_path / "up.bin"), "jh:up/f.bin", verify=True, progress=False)
    assert (up.method, up.verified) == ("sftp", True)  # remote sha256sum through paramiko's jump
    assert connection_for(loc.target()).target.proxy_jump == jump
    assert remote(jumped, "sha256sum am-jump/up/f.bin").split()[0] == up.sha256
    down = storage.copy("jsf:up/f.bin", str(tmp_path / "down.bin"), verify=True, progress=False)
    assert down.verified and (tmp_path / "down.bin").read_bytes() == data
    assert storage.ls("jh:up")["name"].tolist() == ["f.bin"]


def test_a_jump_host_missing_from_known_hosts_is_one_line(jumped, tmp_path, monkeypatch):
    # The target's key is known (as `localhost`), the bastion's (127.0.0.1) is not.
    kind, blob = jumped.known_hosts.read_text().split()[1:3]
    known = tmp_path / "known_hosts"
    known.write_text(f"[localhost]:{jumped.port} {kind} {blob}\n")
    profile = tmp_path / "cybershuttle.yml"
    jumped_profile(jumped, profile, "localhost", known)
    with open(profile, "a") as f:
        f.write("storage:\n  guarded: {location: 'jumpy:/tmp'}\n")
    monkeypatch.setenv("AIRAVATA_MAGIC_PROFILE", str(profile))
    with pytest.raises(AiravataError) as e:
        storage.ls("guarded:")
    msg = str(e.value)
    assert f"jump host {jumped.user}@{jumped.host}:{jumped.port}" in msg and "host key" in msg
    assert str(known) in msg and "\n" not in msg
    assert known.read_text().count("\n") == 1  # never written by us
