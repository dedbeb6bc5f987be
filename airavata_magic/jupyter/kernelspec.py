"""Kernelspecs whose kernels run on a runtime preset: ``airavata-PRESET``.

The spec's ``metadata.kernel_provisioner`` names this package's provisioner
(``airavata-provisioner``) and the preset, so JupyterLab, nbclient and ``papermill -k`` start the
kernel on that runtime with no magic. ``argv`` is required by Jupyter but never run: the
provisioner asks the runtime's backend to start the kernel instead.
"""
from __future__ import annotations

import importlib.resources
import json
import os
import re
import string
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument
from ..checks import runtime_name as validate_name

PROVISIONER = "airavata-provisioner"


def spec_name(preset: str) -> str:
    """Kernelspec names allow ``[a-z0-9._-]``; the preset itself is kept in the config."""
    return "airavata-" + re.sub(r"[^a-z0-9._-]", "-", preset.lower())


def resolve_preset(preset: str, profile: str | None = None) -> str | None:
    """Check that ``preset`` exists; return the absolute path of the profile that defines it."""
    from ..profile import load_profile

    validate_name(preset)
    prof = load_profile(profile)
    if preset not in prof.presets:
        known = ", ".join(sorted(prof.presets)) or "none"
        raise InvalidArgument(f"no runtime preset {preset!r} in {prof.path or 'the profile (no file found)'} "
                              f"(presets: {known}); add it under runtimes:")
    return os.path.abspath(prof.path) if prof.path else None


def kernel_json(preset: str, profile: str | None) -> dict[str, Any]:
    """The kernelspec from its template, ``kernels/kernel.json``.

    ``argv`` is required by Jupyter but never run: the provisioner starts the kernel on the
    runtime. ``interrupt_mode: message`` because the kernel's process is elsewhere."""
    template = (importlib.resources.files("airavata_magic.kernels") / "kernel.json").read_text()
    spec = json.loads(template)
    spec["argv"][0] = sys.executable
    spec["display_name"] = string.Template(spec["display_name"]).substitute(preset=preset)
    spec["metadata"]["kernel_provisioner"]["config"] = {"runtime": preset, "profile": profile}
    return spec


def write_spec(preset: str, kernels_dir: Path, profile: str | None = None) -> Path:
    """Write ``kernels_dir/airavata-PRESET/kernel.json``; return the spec's folder."""
    prof_path = resolve_preset(preset, profile)
    folder = Path(kernels_dir) / spec_name(preset)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(kernel_json(preset, prof_path), indent=1))
    return folder


def install(preset: str, *, profile: str | None = None, user: bool = True, prefix: str | None = None) -> str:
    """Install the kernelspec for ``preset`` (per user by default); return where it went."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory(prefix="airavata-kernelspec-") as tmp:
        folder = write_spec(preset, Path(tmp), profile)
        return KernelSpecManager().install_kernel_spec(str(folder), folder.name, user=user and prefix is None,
                                                       prefix=prefix)
