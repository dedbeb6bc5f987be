"""Walltime expiry on a real 1-minute Slurm job. Runs last in this area: the job was started by
the session fixture ``expiring`` at the beginning, so its 60-90 s pass while other tests run."""
from __future__ import annotations

import time

import pytest

from airavata_magic.runtime import RuntimeState

from .kernel_helpers import execute, wait_state

pytestmark = pytest.mark.slurm


def test_walltime_expiry_marks_the_runtime_expired(expiring):
    s = expiring
    assert s.runtime.ends_at is not None  # from squeue's time left while it ran
    assert 0 < s.runtime.ends_at - s.observations[0].ends_at + 1 if s.observations[0].ends_at else True
    left = 150 - (time.monotonic() - s.started_at)
    obs = wait_state(s, {RuntimeState.EXPIRED, RuntimeState.FAILED, RuntimeState.DEAD, RuntimeState.STOPPED},
                     timeout=max(5, left))
    assert obs.state == RuntimeState.EXPIRED and "walltime" in obs.reason and "TIMEOUT" in obs.reason
    with pytest.raises(Exception):
        execute(s.client, "1", timeout=3)  # the kernel is gone with the allocation
