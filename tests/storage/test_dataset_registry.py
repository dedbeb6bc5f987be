"""Private versus public datasets between two real Unix users: the shared registry's file
permissions decide who sees what (each user runs in its own forked process, setuid to it)."""
from __future__ import annotations

import os
import pickle
import pwd
import shutil
import subprocess
import tempfile

import pytest

from airavata_magic.storage import dataset

USERS = ("amdata1", "amdata2")


@pytest.fixture(scope="module")
def shared(home):
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("needs root to create two Unix users")
        pytest.skip("needs root to create two Unix users")
    for user in USERS:
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", user], check=True)
    root = tempfile.mkdtemp(prefix="am-shared-")
    os.chmod(root, 0o755)
    reg_root = os.path.join(root, "lab")
    os.makedirs(os.path.join(reg_root, "reg"))
    os.chmod(reg_root, 0o755)
    os.chmod(os.path.join(reg_root, "reg"), 0o1777)  # everyone may add; only owners may replace or remove
    profile = os.path.join(root, "cybershuttle.yml")
    with open(profile, "w") as f:
        f.write(f"storage:\n  lab: {{location: {reg_root}}}\ndatasets:\n  registry: lab:reg\n")
    os.chmod(profile, 0o644)
    for user in USERS:
        pw = pwd.getpwnam(user)
        h = os.path.join(root, f"home-{user}")
        os.makedirs(h)
        os.chown(h, pw.pw_uid, pw.pw_gid)
    # Everything the children use is imported here: after setuid they cannot read root's Python.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRAVATA_MAGIC_PROFILE", profile)
        dataset.list_datasets()
        yield root
    shutil.rmtree(root, ignore_errors=True)


def as_user(root: str, user: str, fn):
    """Run ``fn()`` in a child process that is ``user``; its result or its error line comes back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            pw = pwd.getpwnam(user)
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.environ.update(USER=user, LOGNAME=user, AIRAVATA_MAGIC_HOME=os.path.join(root, f"home-{user}"))
            try:
                res = ("ok", fn())
            except Exception as e:  # noqa: BLE001 - reported to the parent
                res = ("error", f"{type(e).__name__}: {e}")
            os.write(w, pickle.dumps(res))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    assert data, f"the process of {user} died"
    return pickle.loads(data)


def names():
    return sorted(dataset.list_datasets()["name"])


def test_private_is_owner_only_public_is_everyones(shared):
    a, b = USERS
    assert as_user(shared, a, lambda: dataset.register("pub", "lab:x", public=True).owner) == ("ok", a)
    assert as_user(shared, a, lambda: dataset.register("secret", "lab:y").public) == ("ok", False)
    assert as_user(shared, b, lambda: dataset.register("bobs", "lab:z").public) == ("ok", False)
    assert as_user(shared, a, names) == ("ok", ["pub", "secret"])
    assert as_user(shared, b, names) == ("ok", ["bobs", "pub"])
    modes = {n: oct(os.stat(os.path.join(shared, "lab", "reg", f"{n}.json")).st_mode & 0o777)
             for n in ("pub", "secret", "bobs")}
    assert modes == {"pub": "0o644", "secret": "0o600", "bobs": "0o600"}
    status, msg = as_user(shared, b, lambda: dataset.show("secret"))
    assert status == "error" and "no dataset named 'secret'" in msg
    status, msg = as_user(shared, b, lambda: dataset.remove("pub"))
    assert status == "error" and "not yours to remove" in msg
    status, msg = as_user(shared, b, lambda: dataset.register("secret", "lab:mine"))
    assert status == "error" and "belongs to another user" in msg
    assert as_user(shared, a, lambda: dataset.remove("pub")) == ("ok", None)
    assert as_user(shared, b, names) == ("ok", ["bobs"])
