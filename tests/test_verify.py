import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from certlight.bounds.backends import NativeBounds
from certlight.errors import CertlightError
from certlight.evaluation import UnsoundBoundError, certify_dataset
from certlight.evaluation.bab import BaBOptions
from certlight.evaluation.cascade import BaBStage, MILPStage
from certlight.runs.pipeline import train
from certlight.verify import verify

from conftest import REPO, compose_train, tiny_run_overrides


@pytest.fixture(scope="module")
def trained_checkpoint(fake_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    cfg = compose_train(
        tiny_run_overrides(fake_data_root, "trainer.max_epochs=4", "eps.train=0.02", "eps.eval=0.01"), out
    )
    train(cfg, out)
    return out / "checkpoints" / "last.ckpt"


def run_verify(*args, cwd):
    """The ``certlight-verify`` console script that ``pip install -e .`` put beside Python."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = Path(sys.executable).parent / "certlight-verify"
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_verify_reports_every_method_at_every_radius(trained_checkpoint, fake_data_root, tmp_path, capsys):
    cfg = compose_verify(
        [
            f"ckpt={trained_checkpoint}",
            f"data.root={fake_data_root}",
            "eps.eval=[0.0,0.01,0.03]",
            "methods=[ibp,crown_ibp,crown]",
            "pgd.steps=10",
            "test_subset=50",
        ]
    )
    report = verify(cfg, tmp_path)
    assert json.loads((tmp_path / "verify.json").read_text()) == json.loads(json.dumps(report))
    assert report["methods"] == ["ibp", "crown_ibp", "crown"] and [r["n"] for r in report["results"]] == [50, 50, 50]
    assert (report["epochs_completed"], report["complete"]) == (4, True)
    assert (
        "| eps_eval | clean err | PGD err | verified (ibp) | "
        "verified (crown_ibp) | verified (crown) | verified (best) |" in capsys.readouterr().out
    )
    at_zero = report["results"][0]
    # at eps 0 the box is a point: every correct example is verified, by every method
    for method in ("ibp", "crown_ibp", "crown"):
        assert at_zero["verified_err"][method] == pytest.approx(at_zero["clean_err"])
    # a larger box never verifies more
    assert (
        report["results"][2]["verified_err"]["best"]
        >= report["results"][1]["verified_err"]["best"]
        > at_zero["verified_err"]["best"] - 1e-9
    )


def test_an_unsound_bound_stops_the_evaluation(trained_checkpoint):
    checkpoint = torch.load(trained_checkpoint, weights_only=False)
    from certlight.models import dm_small

    net = dm_small()
    net.load_state_dict(
        {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    )

    class Overconfident(NativeBounds):
        def margins(self, x, lower, upper, y, method="ibp", batchnorm=None):
            return torch.full((x.shape[0], 9), 100.0)

    x = torch.rand(20, 1, 28, 28)
    y = torch.randint(0, 10, (20,))
    with pytest.raises(UnsoundBoundError, match="verified"):
        certify_dataset(net, Overconfident(net), [(x, y)], [0.0], [1.0], [0.3], ["ibp"], pgd_steps=5)


def compose_verify(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("verify", overrides=overrides)


def test_verify_checks_the_runs_own_radius_by_default(fake_data_root, tmp_path):
    """A Fashion-MNIST run trained and evaluated at 0.07: verify without eps.eval uses 0.07."""
    out = tmp_path / "run"
    overrides = tiny_run_overrides(
        fake_data_root, "dataset=fashion_mnist", "trainer.max_epochs=1", "eps.train=0.08", "eps.eval=0.07"
    )
    train(compose_train(overrides, out), out)
    cfg = compose_verify(
        [f"ckpt={out / 'checkpoints' / 'last.ckpt'}", f"data.root={fake_data_root}", "pgd.steps=2", "test_subset=20"]
    )
    report = verify(cfg, tmp_path / "verify")
    assert [row["eps_eval"] for row in report["results"]] == [pytest.approx(0.07)]
    assert report["train_config"]["dataset"]["name"] == "fashion_mnist"
    assert (report["epochs_completed"], report["complete"], report["train_examples"]) == (1, True, 300)


@pytest.mark.parametrize(
    "override, message",
    [
        ("ckpt=null", "ckpt=PATH is required"),
        ("ckpt=/nonexistent/nope.ckpt", "ckpt=/nonexistent/nope.ckpt: no such file"),
    ],
)
def test_verify_names_a_missing_checkpoint(override, message, tmp_path):
    with pytest.raises(CertlightError, match=re.escape(message)):
        verify(compose_verify([override]), tmp_path)


@pytest.mark.slow
def test_verify_reports_bad_input_in_one_line_without_a_traceback(tmp_path):
    proc = run_verify(f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "certlight.verify: error: ckpt=PATH is required" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_at_the_runs_radius_reproduces_the_runs_own_errors(trained_checkpoint, fake_data_root, tmp_path):
    """Validation (inside Lightning) and verify (from the checkpoint) are two paths to the same
    numbers: they must agree exactly."""
    results = json.loads((trained_checkpoint.parents[1] / "results.json").read_text())
    report = verify(
        compose_verify([f"ckpt={trained_checkpoint}", f"data.root={fake_data_root}", "methods=[ibp]", "pgd.steps=2"]),
        tmp_path,
    )
    (row,) = report["results"]
    assert row["eps_eval"] == pytest.approx(results["eps_eval"])
    assert row["clean_err"] == pytest.approx(results["clean_err"])
    assert row["verified_err"]["ibp"] == pytest.approx(results["verified_err_by_method"]["ibp"])


def test_verify_runs_the_cascade_beside_single_methods(trained_checkpoint, fake_data_root, tmp_path, capsys):
    cfg = compose_verify(
        [
            f"ckpt={trained_checkpoint}",
            f"data.root={fake_data_root}",
            "methods=[ibp,cascade]",
            "cascade_stages=[ibp,crown_ibp]",
            "pgd.steps=2",
            "test_subset=30",
            "eps.eval=0.02",
        ]
    )
    (row,) = verify(cfg, tmp_path)["results"]
    assert [stage["stage"] for stage in row["cascade"]] == ["ibp", "crown_ibp"]
    first, second = row["cascade"]
    assert first["verified"] == round(30 * (1 - row["verified_err"]["ibp"]))  # IBP alone, on all that PGD left
    assert row["verified_err"]["cascade"] <= row["verified_err"]["ibp"]
    assert row["verified_err"]["best"] == row["verified_err"]["cascade"]  # the lowest sound column
    assert "| 0.02 | crown_ibp |" in capsys.readouterr().out


def test_verify_judges_an_image_folder_run_from_its_folder(tmp_path):
    """verify builds its data through training's own path: dataset.folder survives, and the run
    folder alone (weights.pt + results.json) is enough."""
    from test_image_folder import write_folder

    write_folder(tmp_path / "pets", channels=1)
    run_dir = tmp_path / "run"
    overrides = tiny_run_overrides(
        tmp_path, "dataset=image_folder", "dataset.folder=pets", "dataset.batch_size=6", "trainer.max_epochs=1"
    )
    results = train(compose_train(overrides, run_dir), run_dir)
    assert torch.load(run_dir / "weights.pt", weights_only=True)["dataset"] == "image_folder"
    report = verify(
        compose_verify([f"ckpt={run_dir}", f"data.root={tmp_path}", "methods=[ibp]", "pgd.steps=2"]),
        tmp_path / "verify",
    )
    (row,) = report["results"]
    assert report["ckpt"] == str(run_dir / "weights.pt") and row["n"] == 12  # 4 test images per class, 3 classes
    assert row["clean_err"] == pytest.approx(results["clean_err"])
    assert row["verified_err"]["ibp"] == pytest.approx(results["verified_err_by_method"]["ibp"])


def test_two_verify_runs_of_one_checkpoint_report_identical_numbers(fake_data_root, tmp_path):
    run_dir = tmp_path / "natural"
    train(compose_train(tiny_run_overrides(fake_data_root, "method=natural", "trainer.max_epochs=3"), run_dir), run_dir)

    def run(name, seed):
        # pgd.steps=0: random points of a wide box only, so the attack's error depends on its starts
        args = [
            f"ckpt={run_dir}",
            f"data.root={fake_data_root}",
            "methods=[ibp,cascade]",
            "cascade_stages=[ibp]",
            "pgd.steps=0",
            "eps.eval=0.4",
            f"seed={seed}",
        ]
        return [
            {k: r[k] for k in ("pgd_err", "verified_err", "clean_err")}
            for r in verify(compose_verify(args), tmp_path / name)["results"]
        ]

    first = run("a", 0)
    assert first == run("b", 0)
    assert run("c", 1)[0]["pgd_err"] != first[0]["pgd_err"]  # the seed, not the clock, draws the starts


def test_a_weights_file_of_another_model_is_refused(trained_checkpoint, tmp_path):
    from certlight.models import dm_medium
    from certlight.runs.checkpoints import write_weights

    results = json.loads((trained_checkpoint.parents[1] / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps(results))
    config = {**results["config"], "model": {"_target_": "certlight.models.dm_medium"}}
    write_weights(tmp_path / "weights.pt", dm_medium(1, 28, 10).state_dict(), config)
    with pytest.raises(
        CertlightError,
        match=r"belongs to another model or dataset .*model: weights .*dm_medium.*results.json .*dm_small",
    ):
        verify(compose_verify([f"ckpt={tmp_path}"]), tmp_path / "verify")


@pytest.mark.skipif(
    not __import__("certlight.bounds.lirpa", fromlist=["x"]).lirpa_available(),
    reason="auto_LiRPA not installed (CI installs it)",
)
@pytest.mark.parametrize("methods", ["[ibp,alpha_crown]", "[cascade]"])
def test_auto_lirpa_with_alpha_crown_is_refused_before_anything_runs(
    trained_checkpoint, fake_data_root, tmp_path, methods
):
    cfg = compose_verify(
        [f"ckpt={trained_checkpoint}", f"data.root={fake_data_root}", f"methods={methods}", "bounds.backend=auto_lirpa"]
    )
    with pytest.raises(CertlightError, match="^bounds.backend=auto_lirpa cannot compute alpha_crown"):
        verify(cfg, tmp_path)
    assert not (tmp_path / "verify.json").exists()


@pytest.mark.parametrize("complete", ["milp", "bab"])
def test_verify_reports_a_complete_column_and_its_stages(complete, fake_data_root, tmp_path, capsys):
    """methods=[milp] or [bab]: it runs behind IBP and CROWN-IBP, so it verifies at least what
    they do; what it leaves is falsified or unknown (its time limit), and the counts add up. (Its
    verdicts themselves are checked against a grid, the bounds and each other in test_milp.py and
    test_bab.py.)"""
    run_dir = tmp_path / "natural"
    train(compose_train(tiny_run_overrides(fake_data_root, "method=natural", "trainer.max_epochs=2"), run_dir), run_dir)
    args = [
        f"ckpt={run_dir}",
        f"data.root={fake_data_root}",
        f"methods=[ibp,crown_ibp,{complete}]",
        "test_subset=6",
        "eps.eval=0.005",
        "pgd.steps=5",
        f"{complete}_timeout=1",
    ]
    (row,) = verify(compose_verify(args), tmp_path / "verify")["results"]
    assert row["verified_err"][complete] <= min(row["verified_err"]["ibp"], row["verified_err"]["crown_ibp"])
    stages = {s["stage"]: s for s in row[f"{complete}_stages"]}
    assert list(stages) == ["ibp", "crown_ibp", complete]
    last = stages[complete]
    assert last["ran_on"] == stages["crown_ibp"]["ran_on"] - stages["crown_ibp"]["verified"] > 0
    assert last["verified"] + last["falsified"] + last["unknown"] == last["ran_on"]
    assert row["falsified_err"] >= row["pgd_err"] - 1e-6  # pgd_err is a float32 rate
    printed = capsys.readouterr()
    assert "falsified err" in printed.out
    assert re.search(rf"{complete}: .*example/s", printed.err)  # the stage's bar counts examples, not batches


@pytest.mark.parametrize(
    "override, message",
    [
        ("bab_timeout=0", r"^bab_timeout=0 must be a number > 0$"),
        ("bab.iterations=-1", r"^bab\.iterations=-1 must be an integer >= 0$"),
        ("bab.alpha_lr=0", r"^bab\.alpha_lr=0 must be a number > 0$"),
    ],
)
def test_bad_branch_and_bound_options_are_refused_before_anything_runs(
    override, message, trained_checkpoint, fake_data_root, tmp_path
):
    base = [f"ckpt={trained_checkpoint}", f"data.root={fake_data_root}", "methods=[bab]"]
    with pytest.raises(CertlightError, match=message):
        verify(compose_verify([*base, override]), tmp_path)


def test_the_verify_config_names_every_branch_and_bound_option():
    """So ``bab.<option>=...`` works for each; the time limit and memory come from their own keys."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(REPO / "conf" / "verify.yaml")
    fields = {f.name for f in dataclasses.fields(BaBOptions)} - {"timeout", "max_memory_gb"}
    assert set(config.bab) == fields
    assert {"bab_timeout", "bounds"} <= set(config)


def test_milp_is_refused_above_its_neuron_limit_and_only_last_in_a_cascade(
    trained_checkpoint, fake_data_root, tmp_path
):
    base = [f"ckpt={trained_checkpoint}", f"data.root={fake_data_root}"]
    with pytest.raises(CertlightError, match=r"^milp: the network has 6004 ReLUs, more than milp_max_neurons=100"):
        verify(compose_verify([*base, "methods=[milp]", "milp_max_neurons=100"]), tmp_path)
    with pytest.raises(CertlightError, match="milp decides every example it runs on, so it can only be the last stage"):
        verify(compose_verify([*base, "methods=[cascade]", "cascade_stages=[milp,ibp]"]), tmp_path)


def test_bab_hands_nothing_to_the_milp_above_its_neuron_limit(capsys):
    from certlight.verify import without_large_milp

    complete = {"milp": MILPStage(), "bab": BaBStage(BaBOptions(milp_share=0.5))}
    assert without_large_milp(complete, 100, 100)["bab"].options.milp_share == 0.5
    assert capsys.readouterr().out == ""
    assert without_large_milp(complete, 6004, 100)["bab"].options.milp_share == 0
    assert capsys.readouterr().out == "bab: no MILP hand-off (bab.milp_share=0): 6004 ReLUs > milp_max_neurons=100\n"
