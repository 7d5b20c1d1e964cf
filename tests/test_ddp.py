"""Auto-eps state under DDP: every rank holds the same full table, equal to one process's."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from certlight.modules import AutoEpsilon


@pytest.mark.parametrize("device_resident", ["false", "true"])
def test_every_rank_holds_the_same_table_as_one_process_would(device_resident, fake_data_root, tmp_path):
    """Also with the device-resident data path, whose index batches the DistributedSampler shards."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "ddp_auto_eps_worker.py"), str(fake_data_root), str(tmp_path), device_resident],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2  # 200 examples, 2 ranks x 50 per batch

    replay = AutoEpsilon(300, eps_maxoff=0.1, eps_train=0.1)
    for step0, step1 in zip(*ranks):
        # the two ranks saw different examples ...
        assert not set(step0["index"].tolist()) & set(step1["index"].tolist())
        # ... yet hold identical tables after every step,
        assert torch.equal(step0["table"], step1["table"])
        # equal to one process applying the global batch's updates.
        replay.update(torch.cat([step0["index"], step1["index"]]), torch.cat([step0["margin"], step1["margin"]]))
        torch.testing.assert_close(step0["table"], replay.offsets)
    assert (replay.offsets > 0).any()  # the check is not vacuous: some offsets moved
