"""Pure parsers: setup lines, terse avail, conda info, sinfo and sacct text, --since values.

The texts are in the formats the tools print (Lmod 8 / Environment Modules terse avail, conda
``info --json``, Slurm 22.05 ``sinfo``/``sacct`` with the formats in ``cluster.slurm_text``); the
same parsers run against the real tools of the test bed in the other tests of this area."""
from __future__ import annotations

import json

import pytest

from airavata_magic.applications import setup_lines
from airavata_magic.applications.catalog import (
    CONDA, Catalog, parse_conda_info, parse_output, parse_prereqs, parse_terse_avail)
from airavata_magic.cluster.slurm_text import gpus_in_gres, gpus_in_tres, parse_sacct, parse_sinfo, since_arg


def test_loaded_modules_from_setup_lines():
    lines = ["module load cuda/12.4 gcc", "source x && ml psi4/1.9", "echo 'module load fake'",
             "module -q add openmpi/4 # comment module load nope", "module purge"]
    assert setup_lines.loaded_modules(lines) == ["cuda/12.4", "gcc", "psi4/1.9", "openmpi/4"]
    assert setup_lines.satisfied("cuda", ["cuda/12.4"]) and setup_lines.satisfied("gcc/13", ["gcc"])
    assert not setup_lines.satisfied("cuda/11.8", ["cuda/12.4"])
    assert setup_lines.conda_activations([". /opt/c/etc/profile.d/conda.sh && conda activate /opt/c/envs/ml"]) == ["/opt/c/envs/ml"]


def test_prereq_calls():
    text = 'prereq("cuda")\n  prereq("gcc/13", "openmpi")\nprereq_any("intel", "gcc")\n-- prereq("commented")\n'
    assert parse_prereqs(text) == [["cuda"], ["gcc/13"], ["openmpi"], ["intel", "gcc"]]


def test_conflict_calls():
    from airavata_magic.applications.catalog import parse_conflicts

    assert parse_conflicts('conflict("mpich", "mvapich2/2.3")\n  conflict("intel")\n-- conflict("x")') == [
        "mpich", "mvapich2/2.3", "intel"]


def test_terse_avail_of_another_module_system():
    text = "/usr/share/modules/modulefiles:\ndot\nmodule-git\n/opt/mods:\npsi4/1.8(default)\npsi4/1.9\ncuda/\ncuda/12.4\n"
    apps = {a.full_name: a.default for a in parse_terse_avail(text, "hpc")}
    assert apps == {"dot": False, "module-git": False, "psi4/1.8": True, "psi4/1.9": False, "cuda/12.4": False}


def test_conda_info_envs():
    info = {"root_prefix": "/opt/conda", "default_prefix": "/opt/conda",
            "envs": ["/opt/conda", "/opt/conda/envs/torch", "/home/a/.conda/envs/my env"]}
    apps, base = parse_conda_info(json.dumps(info), "hpc")
    assert base == "/opt/conda"
    assert [(a.name, a.path, a.default, a.source) for a in apps] == [
        ("base", "/opt/conda", True, CONDA), ("torch", "/opt/conda/envs/torch", False, CONDA),
        ("my env", "/home/a/.conda/envs/my env", False, CONDA)]
    line = setup_lines.lines_for(apps[2], Catalog("hpc", apps, "", conda_base=base))[0]
    assert line == ". /opt/conda/etc/profile.d/conda.sh && conda activate '/home/a/.conda/envs/my env'"


def test_query_output_sections_without_any_module_system():
    cat = parse_output("@@lmodpkg\n\n@@end\n", "ws", 1.0)
    assert cat.applications == [] and cat.module_system == "" and cat.conda_base == ""


def test_registered_command_line_is_quoted():
    from airavata_magic.applications.catalog import REGISTERED, Application

    app = Application("t", "", REGISTERED, "hpc", path="/opt/my tools/$(x)/t")
    assert setup_lines.lines_for(app, Catalog("hpc", [], "")) == ["export PATH='/opt/my tools/$(x)':\"$PATH\""]


def test_sinfo_partitions():
    text = "debug|up|1|mixed|1/1/0/2|gpu:4\ngpu|up|1|mixed|1/1/0/2|gpu:4\ngpu|up|2|idle|0/16/0/16|gpu:a100:2(S:0-1)\n"
    parts = {p["partition"]: p for p in parse_sinfo(text)}
    assert parts["gpu"]["nodes"] == 3 and parts["gpu"]["gpus"] == 8 and parts["gpu"]["cpus"] == 18
    assert parts["gpu"]["states"] == "idle:2, mixed:1" and parts["debug"]["cpus_idle"] == 1
    assert gpus_in_gres("gpu:a100:2(S:0-1),shard:8") == 2 and gpus_in_gres("(null)") == 0


def test_sacct_jobs_and_gpus():
    text = ("12|bash|acct1|gpu|COMPLETED|7200|4|billing=4,cpu=4,gres/gpu=2,mem=1G,node=1\n"
            "13|run|acct1|debug|CANCELLED by 1000|60|1|cpu=1,mem=256M,node=1\n")
    jobs = parse_sacct(text)
    assert [(j["job_id"], j["state"], j["gpus"], j["cpus"], j["elapsed_s"]) for j in jobs] == [
        ("12", "COMPLETED", 2, 4, 7200), ("13", "CANCELLED", 0, 1, 60)]
    assert gpus_in_tres("cpu=1,gres/gpu:a100=3,mem=1G") == 3


@pytest.mark.parametrize("value, expected", [("12h", ("now-12hours", 43200)), ("7d", ("now-7days", 604800)),
                                             ("2w", ("now-2weeks", 1209600))])
def test_since(value, expected):
    assert since_arg(value) == expected


@pytest.mark.parametrize("value", ["0d", "7", "yesterday", "7d;rm -rf ~", "-1d"])
def test_since_bad(value):
    with pytest.raises(ValueError, match="invalid --since"):
        since_arg(value)
