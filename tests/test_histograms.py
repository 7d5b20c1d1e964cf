import json

import pytest

from certlight.runs.pipeline import build_run, train

from conftest import compose_train, tiny_run_overrides
from wandb_log import history


def test_margin_histograms_reach_json_png_and_tensorboard(fake_data_root, tmp_path):
    cfg = compose_train(
        tiny_run_overrides(
            fake_data_root, "logger=tensorboard", "method=crown_ibp", "reweight.gamma=5", "auto_eps.eps_maxoff=0.05"
        ),
        tmp_path,
    )
    train(cfg, tmp_path)
    history = json.loads((tmp_path / "margin_histograms.json").read_text())
    assert [entry["epoch"] for entry in history] == [0, 1]
    last = history[-1]
    assert sum(last["train_margin"]) == 300 and sum(last["test_margin"]) == 100
    assert sum(last["train_eps"]) == 300 and len(last["bins"]) == 51
    assert (tmp_path / "margin_histograms.png").stat().st_size > 1000

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(
        str(next((tmp_path / "tensorboard").rglob("events.out.tfevents.*")).parent), size_guidance={"histograms": 0}
    )
    events.Reload()
    assert {"margins/train_margin", "margins/test_margin", "margins/train_eps"} <= set(events.Tags()["histograms"])
    # Real histograms of every example, one per epoch: 300 training margins, 100 test margins.
    assert [h.histogram_value.num for h in events.Histograms("margins/train_margin")] == [300, 300]
    assert events.Histograms("margins/test_margin")[-1].histogram_value.num == 100
    assert events.Histograms("margins/train_eps")[-1].histogram_value.max <= 0.1 + 1e-6  # eps.train of the tiny run
    # The verified error under each verifier the method evaluates, and their best.
    assert {"train/mean_weight", "test/verified_err_ibp", "test/verified_err_crown_ibp", "test/verified_err"} <= set(
        events.Tags()["scalars"]
    )


@pytest.mark.slow
def test_margin_histograms_reach_wandb_offline(fake_data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = build_run(compose_train(tiny_run_overrides(fake_data_root, "logger=wandb", "trainer.max_epochs=1"), tmp_path))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    run.trainer.loggers[0].experiment.finish()
    # Read back the offline log W&B wrote (what `wandb sync` uploads), not the live objects.
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    logged = {key: value for row in history(run_dir) for key, value in row.items()}
    for key in ("margins/test_margin", "margins/train_margin", "margins/train_eps"):
        assert logged[f"{key}/_type"] == "histogram", key
    assert sum(logged["margins/train_margin/values"]) == 300 and sum(logged["margins/test_margin/values"]) == 100
    assert 0 <= logged["test/verified_err_ibp"] <= 1 and 0 <= logged["test/clean_err"] <= 1


def test_the_margin_figure_has_the_per_example_eps_panel(tmp_path):
    import numpy as np

    from certlight.callbacks.histograms import BINS
    from certlight.reporting.figures import plot_margins

    margins = {"train_margin (epoch 3)": np.linspace(-0.5, 0.5, 50)}
    plot_margins(margins, tmp_path / "with.svg", BINS, eps=np.linspace(0.2, 0.4, 50))
    plot_margins(margins, tmp_path / "without.svg", BINS)
    assert "per-example training eps" in (tmp_path / "with.svg").read_text()
    assert "per-example training eps" not in (tmp_path / "without.svg").read_text()
