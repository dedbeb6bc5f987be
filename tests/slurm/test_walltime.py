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
    # While it ran, squeue's time left gave the end of the walltime: about start + 60 s.
    assert s.runtime.ends_at is not None
    assert abs(s.runtime.ends_at - (s.runtime.created_at + 60)) < 10
    left = 150 - (time.monotonic() - s.started_at)
    obs = wait_state(s, {RuntimeState.EXPIRED, RuntimeState.FAILED, RuntimeState.DEAD, RuntimeState.STOPPED},
                     timeout=max(5, left))
    assert obs.state == RuntimeState.EXPIRED and "walltime" in obs.reason and "TIMEOUT" in obs.reason
    with pytest.raises(Exception):
        execute(s.client, "1", timeout=3)  # the kernel is gone with the allocation
