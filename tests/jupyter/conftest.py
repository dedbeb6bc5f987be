"""The Jupyter integration tests share the session tests' papermill helpers and the Slurm test bed."""
from tests.sessions.conftest import child_env, papermill, read_nb  # noqa: F401  (fixtures and helper)
from tests.slurm.testbed import slurm_testbed  # noqa: F401  (pytest fixture)
