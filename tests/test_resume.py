"""Resume: refused when it would change the run, recorded when allowed, bit-identical on CPU."""

import json
import re

import pytest
import pytorch_lightning as pl
import torch

from certlight.errors import CertlightError
from certlight.runs.pipeline import build_run, train

from conftest import compose_train, tiny_run_overrides


class CrashAtEpoch(pl.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


def crashed_run(overrides, out, epoch):
    """Train with ``overrides`` until a crash at the start of ``epoch``; return last.ckpt."""
    first = build_run(compose_train(overrides, out), out)
    first.trainer.callbacks.append(CrashAtEpoch(epoch))
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.trainer.fit(first.module, datamodule=first.datamodule)
    return out / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def stopped_checkpoint(fake_data_root, tmp_path_factory):
    """A run with re-weighting and auto-eps stopped after its first of two epochs."""
    out = tmp_path_factory.mktemp("stopped")
    overrides = tiny_run_overrides(
        fake_data_root, "auto_eps.eps_maxoff=0.1", "reweight.gamma=5", "dataset.train_subset=100"
    )
    return overrides, crashed_run(overrides, out, 1)


@pytest.mark.parametrize(
    "change, message",
    [
        ("reweight.gamma=2", "reweight.gamma: 5 -> 2"),
        ("eps.train=0.2", "eps.train: 0.1 -> 0.2"),
        ("auto_eps.eps_maxoff=0", "auto_eps.eps_maxoff: 0.1 -> 0"),
        ("seed=3", "seed: 0 -> 3"),
    ],
)
def test_a_resume_that_changes_the_run_is_refused_naming_old_and_new(change, message, stopped_checkpoint, tmp_path):
    overrides, last = stopped_checkpoint
    cfg = compose_train([*overrides, f"ckpt_path={last}", change], tmp_path)
    with pytest.raises(CertlightError, match=re.escape(message)) as error:
        build_run(cfg, tmp_path)
    assert "allow_resume_changes=[" in str(error.value) and "\n" not in str(error.value)


def test_an_allowed_change_is_made_and_recorded_in_results(stopped_checkpoint, tmp_path):
    overrides, last = stopped_checkpoint
    cfg = compose_train(
        [*overrides, f"ckpt_path={last}", "auto_eps.eps_maxoff=0", "allow_resume_changes=[auto_eps.eps_maxoff]"],
        tmp_path,
    )
    results = train(cfg, tmp_path)  # auto-eps off now: its table is dropped, not a state_dict traceback
    first, second = results["parts"]
    assert first["output_dir"] == str(last.parents[1]) and first["first_epoch"] == 0
    assert second == {
        "output_dir": str(tmp_path),
        "first_epoch": 1,
        "resumed_from": str(last),
        "config_changes": {"auto_eps.eps_maxoff": [0.1, 0]},
    }
    assert results["epochs"] == 2 and results["complete"]
    assert json.loads((tmp_path / "results.json").read_text())["parts"] == results["parts"]


def test_a_checkpoint_of_another_model_is_refused(stopped_checkpoint, tmp_path):
    overrides, last = stopped_checkpoint
    cfg = compose_train([*overrides, f"ckpt_path={last}", "model=dm_medium", "allow_resume_changes=[model]"], tmp_path)
    with pytest.raises(
        CertlightError,
        match=re.escape(
            "the checkpoint belongs to another model or dataset (model._target_: "
            "'certlight.models.dm_small' -> 'certlight.models.dm_medium'"
        ),
    ):
        build_run(cfg, tmp_path)


def test_a_file_that_is_no_checkpoint_is_named(fake_data_root, tmp_path):
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("not a checkpoint")
    cfg = compose_train(tiny_run_overrides(fake_data_root, f"ckpt_path={bogus}"), tmp_path)
    with pytest.raises(CertlightError, match=re.escape(f"ckpt_path={bogus} is not a checkpoint torch can read")):
        build_run(cfg, tmp_path)
    torch.save({"weights": 1}, bogus)
    with pytest.raises(CertlightError, match="is not a certlight training checkpoint"):
        build_run(cfg, tmp_path)


@pytest.mark.parametrize("method", ["ibp", "sabr", pytest.param("taps", marks=pytest.mark.slow)])
def test_stop_and_resume_is_bit_identical_to_the_uninterrupted_run(method, fake_data_root, tmp_path):
    """Auto-eps, re-weighting and augmentation on; 3 epochs straight vs 1 + crash + resume; the
    adversarial methods draw random PGD starts and use the warm-up regulariser."""
    overrides = tiny_run_overrides(
        fake_data_root,
        f"method={method}",
        "trainer.max_epochs=3",
        "schedule.ramp_epochs=2",
        "auto_eps.eps_maxoff=0.1",
        "reweight.gamma=5",
        "dataset.augment=true",
        "dataset.train_subset=150",
    )
    straight = train(compose_train(overrides, tmp_path / "straight"), tmp_path / "straight")
    last = crashed_run(overrides, tmp_path / "first", 1)
    resumed = train(compose_train([*overrides, f"ckpt_path={last}"], tmp_path / "second"), tmp_path / "second")
    for key in ("clean_err", "verified_err", "epochs"):
        assert resumed[key] == straight[key], key
    weights = [
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for run in ("straight", "second")
    ]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert (weights[0]["auto_eps.offsets"] > 0).any()  # the offsets compared are not all zero
    histories = [json.loads((tmp_path / run / "margin_histograms.json").read_text()) for run in ("straight", "second")]
    assert histories[0] == histories[1]


def test_a_crashed_run_resumes_its_schedule_and_auto_eps_state(fake_data_root, tmp_path):
    overrides = tiny_run_overrides(fake_data_root, "auto_eps.eps_maxoff=0.1", "reweight.gamma=5")
    last = crashed_run(overrides, tmp_path / "a", 1)
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 6 and "certlight_config" in saved
    offsets = saved["state_dict"]["auto_eps.offsets"]
    assert (offsets > 0).any()

    resumed = compose_train([*overrides, f"ckpt_path={last}"], tmp_path / "b")
    run = build_run(resumed)
    seen = {}

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not seen:
                seen["offsets"] = pl_module.auto_eps.offsets.clone()
                seen["step"] = trainer.global_step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.setdefault("eps", pl_module.schedule_values.eps)

    run.trainer.callbacks.append(Record())
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=resumed.ckpt_path)
    assert seen["step"] == 6  # 300 examples / 50 per batch = 6 steps in the first epoch
    assert torch.equal(seen["offsets"], offsets)
    assert seen["eps"] == pytest.approx(0.1)  # the 1-epoch ramp is over: full eps.train
    assert run.trainer.current_epoch == 2
    histories = [c for c in run.trainer.callbacks if type(c).__name__ == "MarginHistograms"][0].history
    assert [entry["epoch"] for entry in histories] == [0, 1]  # epoch 0 came back from the checkpoint


def test_a_misspelt_allowed_change_is_refused(stopped_checkpoint, tmp_path):
    overrides, last = stopped_checkpoint
    cfg = compose_train([*overrides, f"ckpt_path={last}", "allow_resume_changes=[trainer.max_epoch]"], tmp_path)
    with pytest.raises(CertlightError, match=re.escape("allow_resume_changes: 'trainer.max_epoch' is no config key")):
        build_run(cfg, tmp_path)


def test_resuming_a_finished_run_is_refused_and_writes_nothing(fake_data_root, tmp_path):
    overrides = tiny_run_overrides(fake_data_root, "trainer.max_epochs=1", "dataset.train_subset=100")
    train(compose_train(overrides, tmp_path / "done"), tmp_path / "done")
    again = tmp_path / "again"
    cfg = compose_train([*overrides, f"ckpt_path={tmp_path / 'done' / 'checkpoints' / 'last.ckpt'}"], again)
    with pytest.raises(
        CertlightError, match=re.escape("that run already finished 1 of trainer.max_epochs=1 epochs; nothing to resume")
    ):
        train(cfg, again)
    assert not (again / "results.json").exists()
