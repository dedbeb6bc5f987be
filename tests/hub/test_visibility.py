"""Visibility across real Unix users: private, group-shared and public entries in one shared hub.

Each user runs the hub's Python API in a process of their own (``runuser``), so what they see is
what the file system lets them read, not what a client decides to show.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from .conftest import EXAMPLE, GROUP, public_tmp

SCRIPT = """
import json, sys
from airavata_magic.hub import Hub
hub = Hub.from_profile()
action = sys.argv[1]
if action == "publish":
    for name, vis, group in [("alice-private", "private", None), ("alice-shared", "shared", sys.argv[3]),
                             ("alice-public", "public", None)]:
        hub.publish(sys.argv[2], {"name": name}, visibility=vis, group=group)
    hub.publish(sys.argv[2], {"name": "alice-for-carol"}, visibility="shared", shared_with=["hubcarol"])
    print(json.dumps(sorted(hub.search_models()["name"])))
elif action == "search":
    df = hub.search_models(name="alice")
    print(json.dumps({"names": sorted(df["name"]), "owners": sorted(set(df["owner"]))}))
elif action == "read":
    try:
        open(sys.argv[2]).read()
        print(json.dumps("read"))
    except PermissionError:
        print(json.dumps("denied"))
"""


@pytest.fixture(scope="module")
def shared_hub(unix_users):
    path = public_tmp("hub-users-")
    os.chmod(path, 0o1777)
    pkg = public_tmp("hub-pkg-")
    shutil.copytree(EXAMPLE, pkg / "digits", dirs_exist_ok=True)
    subprocess.run(["chmod", "-R", "a+rX", str(pkg)], check=True)
    yield path, pkg / "digits"
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(pkg, ignore_errors=True)


def as_user(user: str, python, hub_path, *args: str):
    env = {"PATH": "/usr/bin:/bin", "AIRAVATA_MAGIC_HUB": str(hub_path), "HOME": f"/home/{user}",
           "AIRAVATA_MAGIC_HOME": f"/home/{user}/.airavata-magic"}
    out = subprocess.run(["runuser", "-u", user, "--", "env", *[f"{k}={v}" for k, v in env.items()],
                          str(python), "-c", SCRIPT, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_private_shared_public_across_users(shared_hub, shared_python):
    hub_path, pkg = shared_hub
    mine = as_user("hubalice", shared_python, hub_path, "publish", str(pkg), GROUP)
    assert mine == ["alice-for-carol", "alice-private", "alice-public", "alice-shared"]  # the owner sees all
    bob = as_user("hubbob", shared_python, hub_path, "search")  # in the group
    assert bob == {"names": ["alice-public", "alice-shared"], "owners": ["hubalice"]}
    carol = as_user("hubcarol", shared_python, hub_path, "search")  # not in the group, but named by alice
    assert carol == {"names": ["alice-for-carol", "alice-public"], "owners": ["hubalice"]}
    # the enforcement is the file system's: the private model's files cannot be opened at all
    private = next(hub_path.glob("models/hubalice/.private/alice-private/*/model.json"))
    assert as_user("hubbob", shared_python, hub_path, "read", str(private)) == "denied"
    assert as_user("hubcarol", shared_python, hub_path, "read", str(private.parent.parent.parent.parent /
                                                                    "alice-public" / "1.0" / "model.json")) == "read"


def test_a_folder_named_after_someone_else_is_not_theirs(shared_hub, shared_python, unix_users):
    hub_path, pkg = shared_hub
    # carol makes a folder called hubbob and puts a "public" model in it by hand
    fake = hub_path / "models" / "hubbob" / "alice-fake" / "1.0"
    subprocess.run(["runuser", "-u", "hubcarol", "--", "mkdir", "-p", str(fake)], check=True)
    meta = json.loads((pkg / "model.json").read_text()) | {
        "name": "alice-fake", "owner": "hubbob", "uuid": "0b5a9f7e-3d1c-4c55-9a55-1d2c3b4a5f6e",
        "publication_date": "2026-01-01", "visibility": "public"}
    subprocess.run(["runuser", "-u", "hubcarol", "--", "sh", "-c", f"cat > {fake}/model.json"],
                   input=json.dumps(meta), text=True, check=True)
    seen = as_user("hubbob", shared_python, hub_path, "search")
    assert "alice-fake" not in seen["names"]  # owned by carol, named hubbob: ignored
