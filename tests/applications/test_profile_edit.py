"""``application add`` / ``register`` edit cybershuttle.yml in place: a golden file pins the result
(comments, key order, quoting, flow and block styles kept), and every refusal leaves the file
byte-for-byte untouched. The modules come from the real Lmod of the test bed, over SSH."""
from __future__ import annotations

import os
import pwd
import tempfile
from pathlib import Path

import pytest

from airavata_magic import applications
from airavata_magic.errors import InvalidArgument
from airavata_magic.profile import load_profile

from .conftest import GOLDEN, render


def test_golden_after_adds_and_register(profile_file, apps_testbed):
    f = str(profile_file)
    applications.add("psi4/1.9", runtime="hpc_cpu", file=f)
    applications.add("cuda", runtime="hpc_gpu", file=f)  # no version: the default, pinned
    applications.add("gromacs", runtime="hpc_gpu", file=f)  # hierarchical: needs cuda first
    applications.add("psi4/1.9", resource="ws", file=f)
    applications.register("mytool", "/bin/true", "hpc", description="my tool", file=f)
    expected = render((GOLDEN / "profile_after.yml").read_text(), apps_testbed)
    assert profile_file.read_text() == expected
    prof = load_profile(f)
    assert prof.presets["hpc_cpu"].spec.setup[-1] == "module load psi4/1.9"
    assert prof.applications["mytool"]["command"] == "/bin/true"


@pytest.mark.parametrize("app, where, message", [
    ("nope", {"runtime": "hpc_cpu"}, "unknown application 'nope' on hpc"),
    ("psi4/7.7", {"runtime": "hpc_cpu"}, "psi4 has no version '7.7' on hpc; versions: 1.8 (default), 1.9"),
    ("gromacs/2024.1", {"runtime": "hpc_cpu"}, "gromacs/2024.1 needs cuda/12.4 loaded first"),
    ("qchem", {"runtime": "hpc_cpu"}, "qchem/6.1 needs cuda loaded first (prereq in its modulefile)"),
    ("psi4/1.8", {"runtime": "hpc_gpu"}, "already loads psi4/1.9"),
    ("psi4", {"runtime": "no_such"}, "no preset 'no_such'"),
    ("psi4", {"resource": "local"}, "local is a local resource, which runs no setup lines"),
    ("psi4;id&&$(id)", {"runtime": "hpc_cpu"}, "unknown application 'psi4;id&&$(id)' on hpc"),
    ("psi4 1.9", {"runtime": "hpc_cpu"}, "invalid application 'psi4 1.9'"),
])
def test_refusals_are_one_line_and_leave_the_file_untouched(profile_file, app, where, message):
    applications.add("psi4/1.9", runtime="hpc_gpu", file=str(profile_file))
    before = profile_file.read_bytes()
    with pytest.raises(InvalidArgument) as e:
        applications.add(app, file=str(profile_file), **where)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert profile_file.read_bytes() == before


def test_same_module_again_changes_nothing(profile_file):
    applications.add("psi4/1.9", runtime="hpc_cpu", file=str(profile_file))
    before = profile_file.read_bytes()
    assert "nothing changed" in applications.add("psi4/1.9", runtime="hpc_cpu", file=str(profile_file))
    assert profile_file.read_bytes() == before


def test_conflicting_module_is_refused(profile_file):
    f = str(profile_file)
    applications.add("mpich", runtime="hpc_cpu", file=f)
    before = profile_file.read_bytes()
    with pytest.raises(InvalidArgument, match=r"openmpi/4.1 conflicts with mpich/4.2, which runtimes.hpc_cpu.setup "
                                              r"already loads \(conflict\(\) in its modulefile\)"):
        applications.add("openmpi", runtime="hpc_cpu", file=f)
    assert profile_file.read_bytes() == before
    assert "mpich" in set(applications.show("openmpi", "hpc", file=f).conflicts)


def test_prerequisite_added_first_is_accepted(profile_file):
    f = str(profile_file)
    applications.add("cuda/12.4", runtime="hpc_cpu", file=f)
    applications.add("qchem", runtime="hpc_cpu", file=f)
    assert load_profile(f).presets["hpc_cpu"].spec.setup[-2:] == ["module load cuda/12.4", "module load qchem/6.1"]


def _as_nobody(fn) -> tuple[int, str]:
    """Run ``fn`` in a forked child that dropped root (root may write any file)."""
    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no exec, the imported package is used as is
        os.close(r)
        code, msg = 0, ""
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            fn()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            code, msg = 1, f"{type(e).__name__}: {e}"
        os.write(w, msg.encode())
        os._exit(code)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode()


def test_unwritable_profile_is_one_line_and_untouched(profile_file):
    shared = Path(tempfile.mkdtemp(prefix="apps-ro-"))
    os.chmod(shared, 0o755)
    ro = shared / "cybershuttle.yml"
    ro.write_bytes(profile_file.read_bytes())
    os.chmod(ro, 0o644)  # owned by root: not writable for nobody
    home = shared / "home"
    home.mkdir()
    os.chown(home, pwd.getpwnam("nobody").pw_uid, -1)
    before = ro.read_bytes()

    def add_as_nobody() -> None:
        os.environ["AIRAVATA_MAGIC_HOME"] = str(home)
        applications.add("psi4/1.9", runtime="hpc_cpu", file=str(ro))

    try:
        code, msg = _as_nobody(add_as_nobody)
        assert code == 1
        assert msg.startswith("InvalidArgument: profile ") and "is not writable (the file); nothing changed" in msg
        assert ro.read_bytes() == before
    finally:
        import shutil

        shutil.rmtree(shared)


def test_registered_command_added_to_path(profile_file, apps_testbed):
    f = str(profile_file)
    tool = f"/home/{apps_testbed.user}/tools/bin/mytool"
    apps_testbed.as_user(f"mkdir -p ~/tools/bin && printf '#!/bin/sh\\necho mine\\n' > {tool} && chmod +x {tool}")
    applications.register("mytool", tool, "ws", private=True, file=f)
    message = applications.add("mytool", resource="ws", file=f)
    line = f'export PATH=/home/{apps_testbed.user}/tools/bin:"$PATH"'
    assert repr(line) in message
    assert load_profile(f).resources["ws"].settings["setup"][-1] == line
    assert "nothing changed" in applications.add("mytool", resource="ws", file=f)


def test_symlinked_profile_stays_a_symlink(profile_file, tmp_path):
    link = tmp_path / "link.yml"
    link.symlink_to(profile_file)
    applications.add("psi4/1.9", runtime="hpc_cpu", file=str(link))
    assert link.is_symlink() and "module load psi4/1.9" in profile_file.read_text()
