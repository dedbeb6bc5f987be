"""The magics end to end in a real notebook kernel: a preset extended with ``%application add``
gets the module in its Slurm job, and a cell there runs the module's program."""
from __future__ import annotations

import pytest


@pytest.fixture
def nb(notebook_factory, profile_file, env_for):
    return notebook_factory(env=env_for(profile_file))


def test_added_module_reaches_the_job(nb, profile_file):
    cell = nb.ok("%application add psi4/1.9 --runtime hpc_cpu")
    assert "module load psi4/1.9" in cell.stdout and "runtimes.hpc_cpu.setup" in cell.stdout
    nb.ok("%request_runtime hpc_cpu")
    nb.ok("%wait_for_runtime hpc_cpu --timeout 180", timeout=200)
    out = nb.ok("%%run_on hpc_cpu\n!psi4", timeout=60)
    assert out.stdout.strip() == "psi4 1.9"
    stat = nb.ok("s = %stat_runtime hpc_cpu\nprint(s.loc['setup', 'value'])")
    assert "module load psi4/1.9" in stat.stdout
    nb.ok("%stop_runtime hpc_cpu", timeout=60)


def test_magics_show_dataframes_and_one_line_errors(nb):
    listing = nb.ok("df = %application list --resource hpc --search psi4\nsorted(df.version)")
    assert "['1.8', '1.9']" in listing.text
    bad = nb.run("%application add gromacs --runtime hpc_cpu")
    assert bad.status == "error" or "UsageError" in bad.text
    assert "UsageError: gromacs/2024.1 needs cuda/12.4 loaded first" in bad.text
    assert "Traceback" not in bad.text
    bad = nb.run("%application show")
    assert "UsageError: %application show takes NAME[/VERSION]" in bad.text
    res = nb.ok("r = %resources\nr[r.resource == 'hpc'].set_index('partition')[['nodes', 'gpus']].to_dict()")
    assert "'gpus': {'debug': 4, 'gpu': 4}" in res.text
    assert "'nodes': {'debug': 1, 'gpu': 1}" in res.text
