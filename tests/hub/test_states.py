"""A task's state from the scheduler's view and its own status file: the scheduler's word wins."""
from __future__ import annotations

import pytest

from airavata_magic.hub import schedulers as sch
from airavata_magic.hub.tasks import Task, _combine, new_id


def task(own: str | None = None, cancelled: bool = False, **status) -> Task:
    t = Task(id="TASK2026010100000000", name="t", type="train", model="m", params={}, data={}, runtime="r",
             resource="hpc", kind="slurm", cancelled=cancelled)
    t.status = ({"state": own} if own else {}) | status
    return t


@pytest.mark.parametrize("slurm, own, cancelled, expected", [
    ("PENDING", None, False, "SCHEDULED"),
    ("RUNNING", None, False, "RUNNING"),
    ("COMPLETING", "FINISHED", False, "RUNNING"),
    ("COMPLETED", "FINISHED", False, "FINISHED"),
    ("COMPLETED", "FAILED", False, "FAILED"),
    ("COMPLETED", "RUNNING", False, "FAILED"),  # ended without a final word: not left RUNNING
    ("CANCELLED", "RUNNING", False, "KILLED"),  # scancel from outside
    ("RUNNING", "RUNNING", True, "RUNNING"),  # cancel asked, job not gone yet
    ("FAILED", "RUNNING", True, "KILLED"),
    ("TIMEOUT", "RUNNING", False, "FAILED"),
    ("OUT_OF_MEMORY", "RUNNING", False, "FAILED"),
    ("NODE_FAIL", "FINISHED", False, "FAILED"),  # the scheduler's word wins over the file's
    ("", "FINISHED", False, "FINISHED"),  # forgotten by Slurm after it finished
    ("", "RUNNING", False, "FAILED"),
])
def test_slurm_state_and_status_file(slurm, own, cancelled, expected):
    state, reason = _combine(task(own, cancelled), sch.slurm_view(slurm, "None"))
    assert state == expected
    if expected == "FAILED":
        assert reason


def test_timeout_reason_names_the_slurm_state():
    state, reason = _combine(task("RUNNING"), sch.slurm_view("TIMEOUT", "TimeLimit"))
    assert state == "FAILED" and "TIMEOUT" in reason and "TimeLimit" in reason


def test_task_ids_are_unique_within_a_second(hub_home):
    ids = {new_id(now=1796000000.0) for _ in range(5)}
    assert len(ids) == 5 and all(i.startswith("TASK202611") and len(i) == 20 for i in ids)
