"""Helpers for the session tests: papermill runs in a child process with the test's private home."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from airavata_magic.sessions.runner import RunResult, run_notebook

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def child_env(magic_home: Path) -> dict[str, str]:
    """The environment a papermill child gets: the same private AIRAVATA_MAGIC_HOME as the notebook."""
    env = dict(os.environ)
    env.pop("AIRAVATA_MAGIC_PROFILE", None)
    env["AIRAVATA_MAGIC_HOME"] = str(magic_home)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def papermill(child_env, tmp_path):
    """``papermill(src, out, params=None, env_extra=None) -> RunResult`` (a real child process)."""

    def run(src: Path, out: Path, params: dict[str, Any] | None = None, env_extra: dict[str, str] | None = None,
            **kw: Any) -> RunResult:
        env = dict(child_env, **(env_extra or {}))
        return run_notebook(src, out, params, env=env, cwd=str(tmp_path), timeout=180, **kw)

    return run


def comparable(outputs: list[dict[str, Any]]) -> list[tuple]:
    """Outputs without what legitimately differs between runs (execution counts, metadata)."""
    out = []
    for o in outputs:
        kind = o["output_type"]
        if kind == "stream":
            out.append((kind, o["name"], o["text"]))
        elif kind in ("display_data", "execute_result"):
            data = {k: (json.dumps(v, sort_keys=True) if not isinstance(v, str) else v) for k, v in o["data"].items()}
            out.append((kind, tuple(sorted(data.items()))))
        elif kind == "error":
            out.append((kind, o["ename"], o["evalue"]))
    return out


def read_nb(path: Path) -> dict[str, Any]:
    """A notebook with multi-line strings joined (nbformat stores them as lists of lines)."""
    import nbformat

    return nbformat.reads(Path(path).read_text(), as_version=4)


# The loopback sshd + Slurm test bed of the slurm area (session-scoped; started only when a test
# asks for it).
from tests.slurm.testbed import slurm_testbed  # noqa: E402,F401
