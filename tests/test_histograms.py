import json

from conftest import compose_train, tiny_run_overrides

from certlight.pipeline import build_run, train


def test_margin_histograms_reach_json_png_and_tensorboard(fake_data_root, tmp_path):
    cfg = compose_train(tiny_run_overrides(fake_data_root, "logger=tensorboard", "reweight.gamma=5", "auto_eps.eps_maxoff=0.05"), tmp_path)
    train(cfg, tmp_path)
    history = json.loads((tmp_path / "margin_histograms.json").read_text())
    assert [entry["epoch"] for entry in history] == [0, 1]
    last = history[-1]
    assert sum(last["train_margin"]) == 300 and sum(last["test_margin"]) == 100
    assert sum(last["train_eps"]) == 300 and len(last["bins"]) == 51
    assert (tmp_path / "margin_histograms.png").stat().st_size > 1000

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tensorboard").rglob("events.out.tfevents.*")).parent), size_guidance={"histograms": 0})
    events.Reload()
    assert {"margins/train_margin", "margins/test_margin", "margins/train_eps"} <= set(events.Tags()["histograms"])
    assert "train/mean_weight" in events.Tags()["scalars"]


def test_margin_histograms_reach_wandb_offline(fake_data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = build_run(compose_train(tiny_run_overrides(fake_data_root, "logger=wandb", "trainer.max_epochs=1"), tmp_path))
    run.trainer.fit(run.module, datamodule=run.datamodule)
    experiment = run.trainer.loggers[0].experiment
    summary = dict(experiment.summary)
    experiment.finish()
    assert summary["margins/test_margin"]["_type"] == "histogram"
    assert {"margins/train_margin", "margins/train_eps"} <= set(summary)
