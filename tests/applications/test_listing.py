"""Listing, searching, showing and caching against the real Lmod of the test bed over SSH."""
from __future__ import annotations

import json
import os
import pwd
import shutil
from pathlib import Path

from airavata_magic import applications
from airavata_magic.applications import cache
from airavata_magic.errors import AiravataError, InvalidArgument
from airavata_magic.profile import load_profile

import pytest

from . import testbed_apps


def _rows(df, name):
    return df[df.name == name].sort_values("version")


def test_list_shows_modules_with_defaults_descriptions_and_hierarchy(profile_file):
    df = applications.list(["hpc", "ws"], refresh=True, file=str(profile_file))
    psi4 = _rows(df[df.resource == "hpc"], "psi4")
    assert list(psi4.version) == ["1.8", "1.9"]
    assert list(psi4.default) == [True, False]  # .modulerc.lua marks 1.8, although 1.9 is newer
    assert set(psi4.description) == {"Psi4 quantum chemistry"} and set(psi4.source) == {"module"}
    gromacs = _rows(df[df.resource == "hpc"], "gromacs")  # only reachable after cuda: spider finds it
    assert list(gromacs.requires) == ["cuda/12.4"]
    assert set(df.resource) == {"hpc", "ws"}


def test_search_and_show(profile_file):
    df = applications.list("hpc", search="QUANTUM", file=str(profile_file))
    assert set(df.name) == {"psi4", "qchem"}
    shown = applications.show("qchem", "hpc", file=str(profile_file))
    assert list(shown.prerequisites) == ["cuda"]
    assert "version 6.1" in shown.help.iloc[0]
    assert shown.path.iloc[0] == str(testbed_apps.MODULEFILES / "qchem" / "6.1.lua")
    g = applications.show("gromacs/2024.1", "hpc", file=str(profile_file))
    assert list(g.requires) == ["cuda/12.4"]
    with pytest.raises(InvalidArgument, match="psi4 has no version '3' on hpc"):
        applications.show("psi4/3", "hpc", file=str(profile_file))


def test_cached_listing_runs_no_command_and_refresh_sees_new_modules(profile_file, apps_testbed):
    f = str(profile_file)
    res = load_profile(f).resources["hpc"]
    applications.list("hpc", refresh=True, file=f)
    fetched = cache.cached(res).fetched_at
    new = testbed_apps.MODULEFILES / "newtool" / "0.1.lua"
    try:
        testbed_apps._write(new, testbed_apps.modulefile("newtool", "0.1", "added after the first listing"))
        assert "newtool" not in set(applications.list("hpc", file=f).name)  # the cache answered
        assert cache.cached(res).fetched_at == fetched
        assert "newtool" in set(applications.list("hpc", refresh=True, file=f).name)
        assert cache.cached(res).fetched_at > fetched
    finally:
        new.unlink()
        new.parent.rmdir()
    # Private on disk, and an expired answer is not used.
    path = cache._path("hpc")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert cache.cached(res, max_age=0) is None


def test_the_resource_keeps_spider_answers_until_a_modulefile_changes(profile_file, apps_testbed):
    f = str(profile_file)
    where = Path(pwd.getpwnam(apps_testbed.user).pw_dir) / ".cache" / "airavata-magic"
    shutil.rmtree(where, ignore_errors=True)  # answers kept for other MODULEPATHs (the benchmark's)
    applications.list("hpc", refresh=True, file=f)
    kept = list(where.glob("lmod-*.json"))
    assert len(kept) == 1 and oct(kept[0].parent.stat().st_mode & 0o777) == "0o700"
    stamp = lambda: kept[0].stat().st_mtime_ns  # noqa: E731
    before = stamp()
    cache.forget("hpc")  # a new session: this machine's cache is empty
    assert "psi4" in set(applications.list("hpc", file=f).name)
    assert stamp() == before  # the resource answered from its own cache: spider did not run
    new = testbed_apps.MODULEFILES / "psi4" / "2.0.lua"
    old = testbed_apps.MODULEFILES / "cuda" / "12.4.lua"
    text = old.read_text()
    try:
        testbed_apps._write(new, testbed_apps.modulefile("psi4", "2.0", "Psi4 quantum chemistry"))
        cache.forget("hpc")
        assert "2.0" in set(applications.list("hpc", file=f).query("name == 'psi4'").version)  # a new file
        testbed_apps._write(old, text.replace("NVIDIA CUDA toolkit", "NVIDIA CUDA toolkit, edited"))
        cache.forget("hpc")
        df = applications.list("hpc", file=f)  # an edited file: its new description
        assert set(df[df.name == "cuda"].description) == {"NVIDIA CUDA toolkit, edited"}
    finally:
        new.unlink()
        testbed_apps._write(old, text)
    cache.forget("hpc")
    df = applications.list("hpc", file=f)  # a removed file is gone (its directory changed)
    assert "2.0" not in set(df[df.name == "psi4"].version)
    assert set(df[df.name == "cuda"].description) == {"NVIDIA CUDA toolkit"}


def test_shell_metacharacters_reach_module_quoted(profile_file, apps_testbed):
    marker = f"/tmp/apps-injection-{os.getpid()}"
    for name in (f"x;touch {marker}", f"$(touch {marker})", f"`touch {marker}`"):
        with pytest.raises(InvalidArgument):
            applications.show(name, "hpc", file=str(profile_file))
    assert not os.path.exists(marker)


def test_register_private_and_shared(profile_file, apps_testbed):
    f = str(profile_file)
    script = f"/home/{apps_testbed.user}/bin/mytool"
    apps_testbed.as_user(f"mkdir -p ~/bin && printf '#!/bin/sh\\necho mine\\n' > {script} && chmod +x {script}")
    assert "private to you" in applications.register("mytool", script, "hpc", private=True, description="mine", file=f)
    store = os.path.join(os.environ["AIRAVATA_MAGIC_HOME"], "applications", "registered.json")
    assert oct(os.stat(store).st_mode & 0o777) == "0o600"
    assert json.load(open(store))[0]["command"] == script
    applications.register("shared", "/bin/true", "ws", file=f)
    df = applications.list(["hpc", "ws"], file=f)
    reg = df[df.source == "registered"]
    assert set(zip(reg.resource, reg.name)) == {("hpc", "mytool"), ("ws", "shared")}
    assert "shared:" in profile_file.read_text()
    with pytest.raises(InvalidArgument, match="not an executable file on hpc"):
        applications.register("missing", "/no/such/tool", "hpc", private=True, file=f)
    with pytest.raises(InvalidArgument, match="invalid application name"):
        applications.register("bad name;rm", "/bin/true", "hpc", private=True, file=f)


def test_local_answers_too(profile_file):
    df = applications.list("local", refresh=True, file=str(profile_file))
    assert "psi4" in set(df.name)  # this machine's own Lmod (login shell) sees the same tree



def test_unreachable_resource_is_left_out_with_a_note(profile_file):
    text = profile_file.read_text().replace("runtimes:", "  down:\n    kind: ssh\n    host: 127.0.0.1\n    port: 1\n"
                                            "runtimes:", 1)
    profile_file.write_text(text)
    df = applications.list(search="psi4", file=str(profile_file))
    assert {"hpc", "ws", "local"} <= set(df.resource) and "down" not in set(df.resource)
    assert len(df.attrs["skipped"]) == 1 and df.attrs["skipped"][0].startswith("down: cannot reach SSH server 127.0.0.1:1")
    with pytest.raises(AiravataError, match="cannot reach SSH server 127.0.0.1:1"):
        applications.list("down", file=str(profile_file))  # named: its failure is the answer
