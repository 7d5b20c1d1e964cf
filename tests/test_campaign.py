"""The GPU campaign's loop on the CPU with tiny runs: a run cut at the budget resumes in the next
command and ends where an uninterrupted run ends; what comes back fits the device's limits;
unpacking twice changes nothing; the queue survives a crash mid-write."""

from __future__ import annotations

import json
import os

import pytest
import torch

from certlight.errors import CertlightError
from certlight.runs.pipeline import train
from tools.gpu_queue import runner
from tools.gpu_queue.outputs import check_outputs, pack_outputs
from tools.gpu_queue.pack import pack
from tools.gpu_queue.queue import DONE, PENDING, paper_queue, read_queue, write_json
from tools.gpu_queue.unpack import BEGIN, unpack

from conftest import REPO, compose_train, tiny_run_overrides

TINY = (
    "trainer.max_epochs=3",
    "schedule.ramp_epochs=2",
    "auto_eps.eps_maxoff=0.1",
    "reweight.gamma=5",
    "dataset.train_subset=150",
)


def test_the_paper_queue_puts_seed_0_of_every_row_first():
    queue = paper_queue()
    assert len(queue) == len({e["name"] for e in queue}) == 36
    assert all("seed=0" in e["overrides"] for e in queue[:12]) and all("seed=1" in e["overrides"] for e in queue[12:24])
    assert queue[0]["overrides"][0] == "experiment=paper_mnist_large"  # Table 4 first


def test_a_crash_while_writing_the_queue_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "queue.json"
    write_json(path, [{"name": "a", "status": PENDING}])

    def crash(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_json(path, [{"name": "a", "status": DONE}])
    assert read_queue(path) == [{"name": "a", "status": PENDING}]
    assert [p.name for p in tmp_path.iterdir()] == ["queue.json"]  # no temporary left behind


class BudgetAfterFirstEpoch(runner.Campaign):
    """The first command's budget runs out as soon as the run has a checkpoint (its first epoch)."""

    def left(self) -> float:
        if any(self.state.glob("runs/*/part0/checkpoints/last.ckpt")):
            return 0.0
        return super().left()


@pytest.mark.slow
def test_a_run_cut_at_the_budget_resumes_and_ends_like_an_uninterrupted_run(fake_data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the campaign runs train.py from the repository root, as on the device
    monkeypatch.setattr(runner, "GRACE_S", 0.0)
    monkeypatch.setattr(runner, "START_MARGIN_S", 0.0)
    overrides = tiny_run_overrides(fake_data_root, *TINY)
    state = tmp_path / "state"
    write_json(state / "queue.json", [{"name": "tiny", "overrides": overrides, "status": PENDING}])

    BudgetAfterFirstEpoch(state, budget_s=300, poll_s=0.1).run_queue(parallel=1)
    (entry,) = read_queue(state / "queue.json")
    assert entry["status"] == PENDING and entry.get("failures", 0) == 0  # cut, not failed
    assert json.loads((state / "runs/tiny/part0/results.json").read_text())["complete"] is False

    runner.Campaign(state, budget_s=300, poll_s=0.1).run_queue(parallel=1)  # the next command
    (entry,) = read_queue(state / "queue.json")
    assert entry["status"] == DONE and entry["result"] == "runs/tiny/part1"
    resumed = json.loads((state / "runs/tiny/part1/results.json").read_text())
    assert resumed["parts"][-1]["resumed_from"].endswith("part0/checkpoints/last.ckpt")

    straight = train(compose_train(overrides, tmp_path / "straight"), tmp_path / "straight")
    assert (resumed["clean_err"], resumed["verified_err"]) == (straight["clean_err"], straight["verified_err"])
    weights = [
        torch.load(p / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for p in (state / "runs/tiny/part1", tmp_path / "straight")
    ]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name

    # What comes back fits the device's limits, and unpacking it twice changes nothing.
    (state / "bench").mkdir()
    (state / "bench" / "step_time.md").write_text(
        "### Step time (GPU campaign), 2026-11-25\n\n| variant | ms |\n|---|---|\n| plain | 1.0 |\n"
    )
    out = tmp_path / "out"
    files = pack_outputs(state, out)
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    results = tmp_path / "results"
    (results / "campaign").mkdir(parents=True)
    write_json(results / "campaign" / "queue.json", [{"name": "tiny", "overrides": overrides, "status": PENDING}])
    unpack(out, results)
    first = {p.relative_to(results): p.read_bytes() for p in results.rglob("*") if p.is_file()}
    unpack(out, results)
    assert {p.relative_to(results): p.read_bytes() for p in results.rglob("*") if p.is_file()} == first
    assert read_queue(results / "campaign" / "queue.json")[0]["status"] == DONE
    assert json.loads((results / "runs/gpu-campaign/tiny/results.json").read_text())["complete"] is True
    assert (results / "performance.md").read_text().count("Step time (GPU campaign)") == 1
    assert (results / "paper-mnist.md").read_text().count(BEGIN) == 1


def test_more_than_eight_files_would_not_come_back(tmp_path):
    for i in range(9):
        (tmp_path / f"f{i}").write_text("x")
    with pytest.raises(CertlightError, match="holds 9 files; at most 8 come back"):
        check_outputs(tmp_path)


def test_pack_copies_data_and_queue_within_the_carry_limit(fake_data_root, tmp_path):
    state, record = tmp_path / ".campaign", tmp_path / "results" / "campaign" / "queue.json"
    total = pack(state, fake_data_root, record, wheels=False, repo=REPO)
    assert (state / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()
    assert (state / "data" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
    assert read_queue(state / "queue.json") == read_queue(record) == paper_queue()
    assert 0 < total < 64 * 2**20


def test_run_refuses_a_machine_without_a_gpu_and_records_nothing(tmp_path, monkeypatch, capsys):
    from tools.gpu_queue.__main__ import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = tmp_path / "state"
    write_json(state / "queue.json", [{"name": "a", "overrides": [], "status": PENDING}])
    assert main(["run", "--state", str(state), "--out", str(tmp_path / "out")]) != 0
    assert "run needs a CUDA GPU" in capsys.readouterr().err
    assert not (state / "state.json").exists() and read_queue(state / "queue.json")[0]["status"] == PENDING


@pytest.mark.slow
def test_a_failed_run_is_counted_and_its_reason_reaches_the_log(fake_data_root, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    state = tmp_path / "state"
    bad = [*tiny_run_overrides(fake_data_root), "eps.eval=1.5"]  # refused before training, in one line
    write_json(state / "queue.json", [{"name": "bad", "overrides": bad, "status": PENDING}])
    campaign = runner.Campaign(state, budget_s=300, poll_s=0.1)
    assert campaign.run_queue(parallel=1) == runner.MAX_FAILURES  # retried, then set aside
    assert json.loads((state / "state.json").read_text())["failed_runs"] == runner.MAX_FAILURES
    assert read_queue(state / "queue.json")[0]["status"] == runner.FAILED
    log = (state / "campaign.log").read_text()
    assert "FAILED bad" in log and "eps.eval=1.5 must lie in [0, 1]" in log
