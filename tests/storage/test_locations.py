"""Named locations: the forms a location takes, the user's list, the profile's datasets registry."""
from __future__ import annotations

import os
import stat

import pytest

from airavata_magic import storage
from airavata_magic.errors import InvalidArgument, ProfileError
from airavata_magic.profile import parse_profile
from airavata_magic.storage import locations, sshlogin

PROFILE = """
resources:
  hpc:
    kind: slurm
    host: login.example.edu
    port: 2200
    user: alice
    identity_file: /keys/id
    known_hosts: /keys/known
    python: /usr/bin/python3
  lab-k8s:
    kind: kubernetes
    namespace: research
    image: python:3.12
storage:
  lab: {location: /srv/lab}
  scratch: {location: "sftp://alice@login.example.edu:2200/scratch/alice"}
  cluster: {location: "hpc:~/data"}
datasets:
  registry: "lab:registry"
"""


@pytest.fixture
def profile(tmp_path, monkeypatch, home):
    p = tmp_path / "cybershuttle.yml"
    p.write_text(PROFILE)
    monkeypatch.setenv("AIRAVATA_MAGIC_PROFILE", str(p))
    (home / "storage.json").unlink(missing_ok=True)
    return parse_profile(PROFILE, str(p))


def test_every_form_resolves(profile, tmp_path):
    assert locations.parse("a", str(tmp_path)).kind == "local"
    assert locations.parse("a", f"file://{tmp_path}").root == str(tmp_path)
    sftp = locations.parse("s", "sftp://alice@login.example.edu:2200/scratch/alice", profile=profile)
    # the resource on that host and user lends its key and known_hosts
    assert (sftp.kind, sftp.resource, sftp.root) == ("sftp", "hpc", "/scratch/alice")
    assert sftp.ssh["identity_file"] == "/keys/id" and sftp.ssh["known_hosts"] == "/keys/known"
    other = locations.parse("o", "sftp://bob@elsewhere.org/x", profile=profile)
    assert other.resource is None and other.ssh["known_hosts"] == "~/.ssh/known_hosts"
    res = locations.parse("c", "hpc:/scratch", profile=profile)
    assert (res.kind, res.resource, res.ssh["port"]) == ("resource", "hpc", 2200)
    mem = locations.parse("m", "memory://bucket/x", profile=profile)
    assert (mem.kind, mem.protocol) == ("fsspec", "memory")



def test_a_jumped_resource_lends_its_bastion(profile):
    jumped = parse_profile(PROFILE.replace("    python: /usr/bin/python3\n",
                                           "    python: /usr/bin/python3\n    proxy_jump: bob@bastion:2022\n", 1), "p")
    res = locations.parse("c", "hpc:/scratch", profile=jumped)
    sftp = locations.parse("s", "sftp://alice@login.example.edu:2200/x", profile=jumped)
    assert res.ssh["proxy_jump"] == sftp.ssh["proxy_jump"] == "bob@bastion:2022"
    target = sftp.target()
    assert (target.proxy_jump, target.jump_target().label) == ("bob@bastion:2022", "bob@bastion:2022")
    assert sshlogin.jump_login(res.ssh)["host"] == "bastion"
    assert "proxy_jump" not in locations.parse("c", "hpc:/scratch", profile=profile).ssh  # resume keys unchanged
    from airavata_magic.storage.ends import End

    direct = locations.parse("d", "hpc:/scratch", profile=profile)
    # the same name behind a bastion may be another machine: no remote cp between them
    assert not End("ssh", "/a", "c:", loc=res).same_host(End("ssh", "/b", "d:", loc=direct))
    assert End("ssh", "/a", "c:", loc=res).same_host(End("ssh", "/b", "s:", loc=sftp))

@pytest.mark.parametrize("location, message", [
    ("nosuch:/x", "not a resource of the profile"),
    ("lab-k8s:/data", "PersistentVolumeClaim"),
    ("nosuchscheme://x/y", "no fsspec filesystem knows nosuchscheme://"),
    ("relative/path", "cannot read location"),
    ("sftp:///nohost", "sftp://user@host"),
    ("two\nlines", "one line"),
])
def test_bad_locations_say_what_to_write(profile, location, message):
    with pytest.raises(InvalidArgument, match=message):
        locations.parse("x", location, profile=profile)


def test_user_list_is_private_and_cannot_shadow_the_profile(profile, tmp_path, home):
    storage.register("mine", str(tmp_path))
    f = home / "storage.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    table = storage.list_locations()
    assert list(table.columns) == ["name", "kind", "location", "writable", "source"]
    rows = {r["name"]: r for r in table.to_dict("records")}
    assert rows["lab"]["source"] == "profile" and rows["mine"]["source"] == "user"
    assert rows["mine"]["writable"] is True
    with pytest.raises(InvalidArgument, match="defined in the profile"):
        storage.register("lab", str(tmp_path))
    with pytest.raises(InvalidArgument, match="comes from the profile"):
        storage.remove("lab")
    storage.remove("mine")
    assert "mine" not in set(storage.list_locations()["name"])
    with pytest.raises(InvalidArgument, match="no storage named 'mine'"):
        storage.get("mine")
    with pytest.raises(InvalidArgument, match="invalid name"):
        storage.register("bad name", str(tmp_path))


def test_filesystem_gives_fsspec_and_root(profile, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("x")
    storage.register("here", str(tmp_path / "d"))
    fs, root = storage.filesystem("here")
    assert root == str(tmp_path / "d")
    assert [os.path.basename(p) for p in fs.ls(root, detail=False)] == ["f.txt"]
    storage.register("mem", "memory://am-test")
    fs, root = storage.filesystem("mem")
    fs.pipe(f"{root}/a.bin", b"abc")
    assert storage.ls("mem:")["name"].tolist() == ["a.bin"]
    listing = storage.ls("here:")
    assert listing.to_dict("records")[0]["size"] == 1 and listing["type"].tolist() == ["file"]
    with pytest.raises(InvalidArgument, match="leaves its storage location"):
        storage.ls("here:../..")


def test_profile_datasets_registry_is_checked(tmp_path):
    assert parse_profile(PROFILE).datasets == {"registry": "lab:registry"}
    with pytest.raises(ProfileError, match="datasets.registry must be STORAGE:PATH"):
        parse_profile("storage:\n  a: {location: /x}\ndatasets:\n  registry: nope:reg\n")
    with pytest.raises(ProfileError, match="must be {registry: STORAGE:PATH}"):
        parse_profile("datasets:\n  other: 1\n")
