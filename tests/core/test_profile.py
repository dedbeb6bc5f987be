"""Profile loading: search order, validation with file:line:key errors, presets."""
from __future__ import annotations

import pytest

from airavata_magic.errors import ProfileError
from airavata_magic.profile import find_profile, load_profile, parse_profile

GOOD = """\
resources:
  box:
    kind: local
runtimes:
  quick: {resource: box, cpus: 2, memory: 2G, walltime: 10}
  anywhere: {use: "box,local", gpus: 0}
storage:
  lab_storage: {location: /srv/lab}
"""


def test_good_profile_and_local_always_present():
    p = parse_profile(GOOD, "c.yml")
    assert set(p.resources) == {"local", "box"}
    q = p.presets["quick"]
    assert (q.resource, q.spec.cpus, q.spec.memory, q.spec.walltime) == ("box", 2, 2048, 10)
    assert p.presets["anywhere"].use == ["box", "local"]
    assert p.storage["lab_storage"]["location"] == "/srv/lab"
    assert set(parse_profile("", "e.yml").resources) == {"local"}


@pytest.mark.parametrize("text, line, key, words", [
    ("resources:\n  hpc:\n    kind: slurmm\n", 3, "kind", "unknown kind"),
    ("resources:\n  box:\n    kind: local\n    pyhton: /usr/bin/python3\n", 4, "pyhton", "unknown key"),
    ("resources:\n  box:\n    host: x\n", 3, "resources.box", "missing kind"),
    ("resorces: {}\n", 1, "resorces", "unknown top-level key"),
    ("runtimes:\n  r1: {resource: nowhere}\n", 2, "resource", "unknown resource"),
    ("runtimes:\n  r1:\n    resource: local\n    cpus: many\n", 4, "cpus", "whole number"),
    ("runtimes:\n  r1:\n    resource: local\n    memory: lots\n", 4, "memory", "512M"),
    ("runtimes:\n  r1:\n    resource: local\n    walltime: -5\n", 4, "walltime", "between"),
    ("runtimes:\n  r1:\n    resource: local\n    colour: red\n", 4, "colour", "unknown key"),
    ("runtimes:\n  r1: {cpus: 2}\n", 2, "runtimes.r1", "needs resource"),
    ("runtimes:\n  local: {resource: local}\n", 2, "local", "own kernel"),
    ("resources:\n  a: 1\n  a: 2\n", 3, None, "duplicate key"),
    ("resources: [\n", 2, None, "not valid YAML"),
    ("- a\n- b\n", 1, None, "top level must be a mapping"),
    ("storage:\n  s: {where: /x}\n", 2, "s", "location"),
])
def test_bad_profiles_name_file_line_and_key(text, line, key, words):
    with pytest.raises(ProfileError) as ei:
        parse_profile(text, "/p/cybershuttle.yml")
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"profile /p/cybershuttle.yml:{line}"), msg
    if key:
        assert f"key '{key}'" in msg, msg
    assert words in msg, msg


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIRAVATA_MAGIC_PROFILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_profile() is None
    (tmp_path / "cybershuttle.yml").write_text(GOOD)
    assert find_profile() == tmp_path / "cybershuttle.yml"
    other = tmp_path / "other.yml"
    other.write_text("resources: {}\n")
    monkeypatch.setenv("AIRAVATA_MAGIC_PROFILE", str(other))
    assert find_profile() == other
    assert find_profile(str(tmp_path / "cybershuttle.yml")) == tmp_path / "cybershuttle.yml"
    with pytest.raises(ProfileError, match="file not found"):
        find_profile(str(tmp_path / "missing.yml"))
    monkeypatch.setenv("AIRAVATA_MAGIC_PROFILE", str(tmp_path / "gone.yml"))
    with pytest.raises(ProfileError, match=r"AIRAVATA_MAGIC_PROFILE"):
        load_profile()


def test_profile_is_reloaded_when_changed(tmp_path):
    f = tmp_path / "c.yml"
    f.write_text(GOOD)
    assert "quick" in load_profile(str(f)).presets
    f.write_text(GOOD.replace("quick", "quicker") + "\n")
    assert "quicker" in load_profile(str(f)).presets
