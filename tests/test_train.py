"""End to end: train.py as a user runs it, on the fixture data."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from certlight.runs.pipeline import train

from conftest import REPO, compose_train, tiny_run_overrides


def run_train_py(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_train_py_trains_and_writes_results(fake_data_root, tmp_path):
    out = tmp_path / "run"
    proc = run_train_py(*tiny_run_overrides(fake_data_root), f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 2 and results["method"] == "ibp" and results["dataset"] == "mnist"
    assert results["complete"] and (results["train_examples"], results["test_examples"]) == (300, 100)
    assert 0 <= results["clean_err"] <= results["verified_err"] <= 1
    assert results["hardware"] and results["wall_time_s"] > 0
    assert (out / "checkpoints" / "last.ckpt").is_file()
    # weights.pt is the network that was evaluated: it reproduces the reported clean error
    from certlight.data import CertifiedDataModule
    from certlight.models import dm_small

    net = dm_small()
    net.load_state_dict(torch.load(out / "weights.pt", weights_only=True)["state_dict"])
    data = CertifiedDataModule("mnist", root=str(fake_data_root), device_resident=False)
    data.setup("test")
    x, y, _ = data.test_set.__getitems__(list(range(len(data.test_set))))
    with torch.no_grad():
        assert (net.eval()(x).argmax(1) != y).float().mean().item() == pytest.approx(results["clean_err"])
    # the run folder at the start, and at the end with the errors and the radius they are at
    assert f"run folder: {out}" in proc.stdout
    assert (
        f"verified error {100 * results['verified_err']:.2f}% at eps_eval=0.05; results in {out / 'results.json'}"
        in proc.stdout
    )
    assert f"run folder: {out}" in (out / "train.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    "override, message",
    [
        ("eps.eval=1.5", "eps.eval=1.5 must lie in [0, 1]"),
        ("data.root=/nonexistent/data", "/nonexistent/data/MNIST/raw/train-images-idx3-ubyte"),
    ],
)
def test_train_py_reports_bad_input_in_one_line_without_a_traceback(override, message, fake_data_root, tmp_path):
    proc = run_train_py(
        *tiny_run_overrides(fake_data_root), override, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert proc.returncode != 0
    assert message in proc.stderr and "certlight: error:" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_killed_run_exits_non_zero_and_leaves_results_marked_incomplete(fake_data_root, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    args = [*tiny_run_overrides(fake_data_root, "trainer.max_epochs=200"), f"hydra.run.dir={out}"]
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.ckpt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "certlight: error: training stopped after" in stderr and "Traceback" not in stderr
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "interrupted" and not results["complete"]
    assert 1 <= results["epochs"] < 200 and results["max_epochs"] == 200
    assert 0 <= results["clean_err"] <= results["verified_err"] <= 1  # the last finished epoch's


def test_learning_on_separable_fixture_data_reduces_clean_error(fake_data_root, tmp_path):
    cfg = compose_train(tiny_run_overrides(fake_data_root, "trainer.max_epochs=4", "method=natural"), tmp_path)
    results = train(cfg, tmp_path)
    assert results["clean_err"] < 0.3


def test_crown_ibp_reports_both_verifiers_and_their_best(fake_data_root, tmp_path):
    cfg = compose_train(tiny_run_overrides(fake_data_root, "method=crown_ibp", "dataset.train_subset=100"), tmp_path)
    results = train(cfg, tmp_path)
    by_method = results["verified_err_by_method"]
    assert set(by_method) == {"ibp", "crown_ibp"}


@pytest.mark.slow
def test_multirun_sweep_over_tactics_and_seeds_then_report(fake_data_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train_py(
        "-m",
        *tiny_run_overrides(fake_data_root, "trainer.max_epochs=1", "dataset.train_subset=100"),
        "reweight.gamma=0,5",
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(sweep.rglob("results.json"))) == 4
    from certlight.report import main as report_main

    assert report_main([str(sweep)]) == 0


def test_cifar_fixture_trains_with_fraction_epsilons_and_augmentation(fake_data_root, tmp_path):
    overrides = tiny_run_overrides(fake_data_root, "dataset=cifar10", "trainer.max_epochs=1", "dataset.batch_size=20")
    overrides = [o for o in overrides if not o.startswith("eps.")] + ["eps.train=8.8/255", "eps.eval=8/255"]
    results = train(compose_train(overrides, tmp_path), tmp_path)
    assert results["dataset"] == "cifar10" and results["eps_eval"] == pytest.approx(8 / 255)
    assert results["config"]["dataset"]["batch_size"] == 20
    assert 0 <= results["verified_err"] <= 1


def test_device_resident_data_trains_exactly_like_the_host_loader(fake_data_root, tmp_path):
    runs = {}
    for resident in ("false", "true"):
        cfg = compose_train(
            tiny_run_overrides(fake_data_root, f"dataset.device_resident={resident}"), tmp_path / resident
        )
        runs[resident] = train(cfg, tmp_path / resident)
    for key in ("clean_err", "verified_err"):
        assert runs["true"][key] == runs["false"][key]


def test_schedule_values_reach_the_logger_every_log_interval(fake_data_root, tmp_path):
    cfg = compose_train(tiny_run_overrides(fake_data_root, "trainer.log_every_n_steps=2"), tmp_path)
    train(cfg, tmp_path)
    rows = [line.split(",") for line in next(tmp_path.glob("csv/*/metrics.csv")).read_text().splitlines()]
    header = rows[0]
    logged = [
        (int(r[header.index("step")]), float(r[header.index("schedule/eps")]))
        for r in rows[1:]
        if r[header.index("schedule/eps")]
    ]
    # 6 steps per epoch, 2 epochs, ramp over the first: eps = 0.1 * step / 6, then 0.1
    assert [step for step, _ in logged] == [0, 2, 4, 6, 8, 10]
    for step, eps in logged:
        assert eps == pytest.approx(min(0.1, 0.1 * step / 6))


def test_every_epoch_is_evaluated_on_the_whole_test_set_and_timed(fake_data_root, tmp_path):
    """The evaluation schedule the README documents (the whole test split after every epoch,
    the margins of every training and test example in the histograms) must not change when
    epochs are made cheaper; the timer sees every epoch, and an epoch contains its steps."""
    cfg = compose_train(tiny_run_overrides(fake_data_root, "trainer.max_epochs=3"), tmp_path)
    results = train(cfg, tmp_path)
    histograms = json.loads((tmp_path / "margin_histograms.json").read_text())
    assert [h["epoch"] for h in histograms] == [0, 1, 2]
    for epoch in histograms:
        assert sum(epoch["test_margin"]) == 100 and sum(epoch["train_margin"]) == 300
    rows = [line.split(",") for line in next(tmp_path.glob("csv/*/metrics.csv")).read_text().splitlines()]
    header = rows[0]

    def logged(key):
        return [(r[header.index("epoch")], float(r[header.index(key)])) for r in rows[1:] if r[header.index(key)]]

    # After the last epoch the final network is evaluated once more: what results.json reports.
    verified = logged("test/verified_err")
    assert [epoch for epoch, _ in verified] == ["0", "1", "2", "3"]
    assert verified[-1][1] == verified[-2][1] == pytest.approx(results["verified_err"])
    epochs, steps = [value for _, value in logged("time/epoch_s")], [value for _, value in logged("time/train_steps_s")]
    assert len(epochs) == len(steps) == 3
    assert all(0 < step < epoch for step, epoch in zip(steps, epochs))
    timing = results["epoch_time"]
    assert timing["epochs_timed"] == 3
    assert timing["epoch_over_steps"] == pytest.approx(sum(epochs) / sum(steps), rel=1e-2)
