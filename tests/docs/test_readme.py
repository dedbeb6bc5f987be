"""README.md says what the code does: the magic table is the magics' own help, the Binder badge
points at this repository's default branch."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "magic_table.py"
README = ROOT / "README.md"
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _tool(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRAVATA_MAGIC_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, str(TOOL), *args], env=env, capture_output=True, text=True, timeout=120)


def _rows(block: str) -> dict[str, str]:
    """Table rows by magic name (``%name`` or ``%%name``)."""
    rows = {}
    for line in block.splitlines():
        m = re.match(r"\| `(%%?[\w]+)", line)
        if m:
            rows[m.group(1)] = line
    return rows


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The table built from every magic that ``%load_ext airavata_magic`` registers."""
    r = _tool(tmp_path=tmp_path_factory.mktemp("table"))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_every_magic_and_flag_is_in_the_readme(generated: str) -> None:
    text = README.read_text()
    begin, end = generated.splitlines()[0], generated.splitlines()[-1]
    assert begin in text and end in text, "README.md lost the magic table's markers"
    block = text[text.index(begin):text.index(end) + len(end)]
    want, have = _rows(generated), _rows(block)
    assert len(want) >= 13, want  # the runtime and session magics at least
    missing = sorted(set(want) - set(have))
    flags = {m: [f for f in FLAG.findall(row.split("|")[1]) if f not in have[m].split("|")[1]]
             for m, row in want.items() if m in have}
    flags = {m: f for m, f in flags.items() if f}
    fix = "run: python tools/magic_table.py --write"
    assert not missing, f"magics missing from README.md: {missing}; {fix}"
    assert not flags, f"flags missing from README.md: {flags}; {fix}"
    assert block == generated, f"README.md's magic table differs from the magics' help; {fix}"


def test_the_check_fails_when_a_flag_is_missing(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    text = README.read_text()
    assert "[--live] " in text
    stale.write_text(text.replace("[--live] ", "", 1))
    r = _tool("--check", "--readme", str(stale), tmp_path=tmp_path)
    assert r.returncode == 1 and "--write" in r.stderr, (r.returncode, r.stderr)
    assert _tool("--write", "--readme", str(stale), tmp_path=tmp_path).returncode == 0
    assert _tool("--check", "--readme", str(stale), tmp_path=tmp_path).returncode == 0
    assert stale.read_text() == text


def test_binder_badge_points_at_the_default_branch() -> None:
    repo = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert repo, "pyproject.toml has no [project.urls] Repository"
    repo = repo.group(1)
    owner_name = repo.removeprefix("https://github.com/").strip("/")
    badge = re.search(r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]\((\S+)\)", README.read_text())
    assert badge, "README.md has no Binder badge"
    assert badge.group(1).startswith(f"https://mybinder.org/v2/gh/{owner_name}/main?"), badge.group(1)
    target = re.search(r"urlpath=lab/tree/(\S+)$", badge.group(1))
    assert target and (ROOT / target.group(1)).is_file(), badge.group(1)


def test_the_profile_example_is_a_valid_profile() -> None:
    """The README's cybershuttle.yml example passes the profile checks, storage locations included."""
    from airavata_magic.profile import parse_profile
    from airavata_magic.storage import locations

    text = README.read_text()
    block = text[text.index("## The profile"):].split("```yaml\n", 1)[1].split("```", 1)[0]
    profile = parse_profile(block, "README.md")
    kinds = {n: locations.parse(n, b["location"], "profile", profile).kind for n, b in profile.storage.items()}
    assert set(profile.resources) >= {"hpc", "lab-k8s"} and set(kinds.values()) == {"resource", "claim"}
