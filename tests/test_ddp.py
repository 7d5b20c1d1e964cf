"""Under DDP: every rank holds the same full auto-eps table as one process would, the gradient
is the single-process gradient of the whole global batch, and histograms count every rank."""

import json
import os
import subprocess
import sys

import pytest
import torch
from ddp_auto_eps_worker import WORKER_OVERRIDES

from certlight.methods import AutoEpsilon
from certlight.runs.pipeline import build_run

from conftest import REPO, compose_train, tiny_run_overrides

pytestmark = pytest.mark.slow  # two-process DDP fits


@pytest.fixture(scope="module", params=[("ibp", "false"), ("sabr", "true")], ids=lambda p: "-".join(p))
def ddp_run(request, fake_data_root, tmp_path_factory):
    """A 2-process CPU fit of IBP; and of SABR (PGD in the step, the warm-up regulariser) on the
    device-resident data path, whose index batches the DistributedSampler shards."""
    method, device_resident = request.param
    out = tmp_path_factory.mktemp(f"ddp_{method}_{device_resident}")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "ddp_auto_eps_worker.py"),
            str(fake_data_root),
            str(out),
            device_resident,
            method,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "method").write_text(method)
    return out


def test_the_ranks_end_with_the_same_network(ddp_run):
    weights = [torch.load(ddp_run / f"weights{r}.pt") for r in (0, 1)]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name


def test_every_rank_holds_the_same_table_as_one_process_would(ddp_run):
    tmp_path = ddp_run
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


def test_a_ddp_step_has_the_gradient_of_one_process_on_the_global_batch(ddp_run, fake_data_root, tmp_path):
    """Re-weighting on: eq. 8 divides by the weights of the whole global batch, not each rank's."""
    if (ddp_run / "method").read_text() != "ibp":
        pytest.skip("SABR's PGD starts are drawn per rank: one process on the global batch draws others")
    first = [torch.load(ddp_run / f"first_step{r}.pt") for r in (0, 1)]
    for name in first[0]["grads"]:
        torch.testing.assert_close(first[0]["grads"][name], first[1]["grads"][name])
    run = build_run(
        compose_train(tiny_run_overrides(fake_data_root, *WORKER_OVERRIDES, "trainer.max_epochs=1"), tmp_path), tmp_path
    )
    module = run.module
    module.schedule_values = module.schedule.at(0, 2)
    x, y, index = (torch.cat([first[0]["batch"][i], first[1]["batch"][i]]) for i in range(3))
    step = module.training_step((x, y, index), 0)  # once: it also moves the auto-eps offsets
    assert step["weights"][:50].sum() != step["weights"][50:].sum()  # the ranks' sums differ
    step["loss"].backward()
    for name, parameter in module.named_parameters():
        # float32 sums in another order (two ranks' halves, then averaged): a few ulps apart
        torch.testing.assert_close(first[0]["grads"][name], parameter.grad, rtol=1e-4, atol=1e-6)


def test_epoch_metrics_average_every_ranks_examples(ddp_run):
    first = [torch.load(ddp_run / f"first_step{r}.pt") for r in (0, 1)]
    steps = [torch.load(ddp_run / f"rank{r}.pt") for r in (0, 1)]
    local = [torch.cat([s["weights"] for s in rank]).mean() for rank in steps]
    assert abs(local[0] - local[1]) > 1e-4  # the ranks' own means differ
    for rank in first:
        assert rank["epoch_mean_weight"] == pytest.approx(float(sum(local) / 2), rel=1e-5)


def test_margin_histograms_count_the_examples_of_every_rank(ddp_run):
    (entry,) = json.loads((ddp_run / "run" / "margin_histograms.json").read_text())
    assert sum(entry["train_margin"]) == 200 and sum(entry["train_eps"]) == 200  # 2 ranks x 100
    assert sum(entry["test_margin"]) == 100  # the fixture's whole test set, 50 per rank
