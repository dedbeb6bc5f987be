"""Scale runs for real: torch.distributed ranks started by srun on the Slurm test bed (and as
local processes), Results.json per rank reduced to the table, a failing rank ending the run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from airavata_magic.errors import InvalidArgument, RuntimeFailed
from airavata_magic.fanout.scale import COLUMNS, scale_run

from .conftest import EXAMPLES

SCRIPT = EXAMPLES / "scale_infer.py"
N = 1024


def _failing_copy(tmp_path: Path, rank: int) -> Path:
    src = SCRIPT.read_text().replace("from __future__ import annotations\n", "")
    p = tmp_path / "scale_fail.py"
    p.write_text(f"import os\nos.environ['SCALE_FAIL_RANK'] = '{rank}'\n" + src)
    return p


@pytest.mark.slurm
def test_world_sizes_on_slurm_reduce_to_the_table_with_cost(profile, tmp_path):
    res = scale_run(str(SCRIPT), world_sizes="1,2,4", resource="hpc", file=str(profile), overcommit=True,
                    output=str(tmp_path / "scale"), timeout=400)
    t = res.table
    assert list(t.columns) == COLUMNS
    assert list(t["world_size"]) == [1, 2, 4]
    assert (t["samples"] == N).all()  # unique samples over ranks = the input count
    assert t.loc[0, "speedup"] == pytest.approx(1.0) and t.loc[0, "efficiency"] == pytest.approx(1.0)
    assert (t["cost"] > 0).all()
    # cost = hours x ranks x cpu_hour (one thread per rank, no GPUs)
    assert t.loc[2, "cost"] == pytest.approx(t.loc[2, "wall_time_s"] / 3600 * 4 * 0.05)
    ranks = res.ranks
    assert sorted(ranks[ranks.world_size == 4]["rank"]) == [0, 1, 2, 3]
    assert set(ranks["total_samples_seen_by_all_reduce"]) == {N}  # the ranks really talked
    assert (ranks["threads"] == 1).all()
    r = json.loads((tmp_path / "scale" / "w4" / "rank-3" / "Results.json").read_text())
    assert {"time_per_batch_s", "num_batches", "batch_size", "device", "throughput", "samples_per_second",
            "cpu_info", "memory_info"} <= set(r)


@pytest.mark.slurm
def test_a_failing_rank_fails_the_run_with_its_stderr_and_no_rank_waits(profile, tmp_path):
    with pytest.raises(RuntimeFailed) as e:
        scale_run(str(_failing_copy(tmp_path, 1)), world_sizes="2", resource="hpc", file=str(profile),
                  overcommit=True, output=str(tmp_path / "out"), timeout=300)
    assert "world size 2: rank 1 exited 1" in str(e.value)
    assert "failing on purpose" in e.value.log_tail
    # rank 0 did not sit at the rendezvous until gloo's timeout: srun ended it
    exit0 = tmp_path / "out" / "w2" / "rank-0" / "exit"
    assert not exit0.exists() or int(exit0.read_text()) >= 128


@pytest.mark.slurm
def test_bad_world_sizes_are_refused_before_submitting(profile, tmp_path):
    with pytest.raises(InvalidArgument, match="at least 1"):
        scale_run(str(SCRIPT), world_sizes="0,2", resource="hpc", file=str(profile))
    with pytest.raises(InvalidArgument, match="needs 64 CPUs"):
        scale_run(str(SCRIPT), world_sizes="64", resource="hpc", file=str(profile), output=str(tmp_path / "x"))
    assert not list((tmp_path / "x").glob("w*"))


def test_local_ranks_and_a_local_failure(tmp_path):
    res = scale_run(str(SCRIPT), world_sizes=[1, 2], resource="local", output=str(tmp_path / "a"), timeout=200)
    assert list(res.table["samples"]) == [N, N]
    assert res.table["cost"].isna().all()  # no prices for local
    with pytest.raises(RuntimeFailed, match="rank 0 exited 1"):
        scale_run(str(_failing_copy(tmp_path, 0)), world_sizes=[2], resource="local", output=str(tmp_path / "b"),
                  timeout=200)


@pytest.mark.slurm
def test_gpus_per_rank_gives_each_rank_its_own_gpu_and_gpu_cost(profile, tmp_path):
    res = scale_run(str(SCRIPT), world_sizes="2", runtime="hpc_gpu", gpus_per_rank=1, file=str(profile),
                    overcommit=True, output=str(tmp_path / "g"), timeout=400)
    seen = sorted(res.ranks["visible_gpus"])
    assert len(seen) == 2 and all(seen) and seen[0] != seen[1]  # --gpus-per-task: one device each
    t = res.table
    assert t.loc[0, "cost"] == pytest.approx(t.loc[0, "wall_time_s"] / 3600 * 2 * (0.05 + 2.5))
    with pytest.raises(InvalidArgument, match="GPU"):
        scale_run(str(SCRIPT), world_sizes="2", runtime="hpc_gpu", gpus_per_rank=3, file=str(profile), overcommit=True)
