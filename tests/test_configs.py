import re

import pytest

from certlight.errors import CertlightError
from certlight.runs.pipeline import build_run

from conftest import REPO, compose_train, tiny_run_overrides

GROUPS = ["dataset", "model", "method", "schedule", "reweight", "auto_eps", "trainer", "logger", "experiment"]


def options(group):
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


def test_the_readme_lists_exactly_the_options_each_group_has():
    readme = (REPO / "README.md").read_text()
    for group in ("dataset", "model", "method", "schedule", "reweight", "trainer", "logger", "experiment"):
        rows = re.findall(rf"^\| `{group}` \| (.*?) \|", readme, flags=re.M)
        assert rows, group
        listed = set(re.findall(r"`([a-z0-9_]+)`", " ".join(rows)))
        if group == "experiment":  # its options continue on the next table row
            listed |= set(
                re.findall(
                    r"`([a-z0-9_]+_small|[a-z0-9_]+_large[a-z0-9_]*)`",
                    readme.split("| `experiment` |")[1].split("\n\n")[0],
                )
            )
        assert set(options(group)) <= listed, (group, set(options(group)) - listed)


@pytest.mark.parametrize("group, option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_builds(group, option, fake_data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_train([f"{group}={option}", f"data.root={fake_data_root}"], tmp_path)
    if group == "trainer" and option != "cpu":
        # Building needs a GPU (or several processes); what reaches the Trainer is checked here.
        expected = {"gpu": ("gpu", 1, "auto"), "ddp": ("auto", 2, "ddp")}[
            option
        ]  # ddp: GPUs where present, else gloo on CPUs
        assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.get("strategy", "auto")) == expected
        return
    if option == "image_folder":
        with pytest.raises(CertlightError, match="needs dataset.folder=PATH"):
            build_run(cfg)
        return  # built on a generated folder in test_image_folder.py
    run = build_run(cfg)
    assert run.module.net is not None and run.trainer.max_epochs == cfg.trainer.max_epochs


def test_dataset_sets_its_epsilon_defaults(tmp_path):
    cfg = compose_train(["dataset=cifar10"], tmp_path)
    assert (cfg.eps.train, cfg.eps.eval) == ("8.8/255", "8/255")
    assert compose_train(["dataset=fashion_mnist"], tmp_path).eps.eval == 0.1


def test_paper_recipe_values(tmp_path):
    cfg = compose_train(["experiment=paper_mnist_small"], tmp_path)
    assert cfg.model._target_.endswith("dm_small") and cfg.method._target_.endswith("IBPModule")
    assert (cfg.eps.train, cfg.eps.eval, cfg.dataset.batch_size, cfg.trainer.max_epochs) == (0.4, 0.3, 100, 100)
    assert (cfg.schedule.warmup_epochs, cfg.schedule.ramp_epochs) == (3, 17)
    assert list(cfg.lr_scheduler.milestones) == [25, 42] and cfg.optimizer.lr == 0.001
    assert compose_train(["experiment=paper_mnist_large"], tmp_path).model._target_.endswith("dm_large")


@pytest.mark.parametrize(
    "override, message",
    [
        ("eps.train=-0.1", "eps.train=-0.1 must lie in [0, 1]"),
        ("eps.eval=1.5", "eps.eval=1.5 must lie in [0, 1]"),
        ("eps.eval=abc", "eps.eval='abc' is not a number"),
        ("reweight.gamma=-2", "reweight.gamma=-2 must be >= 0"),
        ("auto_eps.eps_maxoff=0.5", "auto_eps.eps_maxoff=0.5 must lie in [0, eps.train=0.1]"),
        ("dataset.name=svhn", "unknown dataset 'svhn'"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 must be a positive integer"),
        ("schedule.kappa_start=2", "schedule.kappa_start=2"),
        ("seed=abc", "seed='abc' must be a non-negative integer"),
        ("reweight.gamma=abc", "reweight.gamma='abc' is not a number"),
        ("reweight.alpha=lots", "reweight.alpha='lots' is not a number"),
        ("schedule.kappa_end=half", "schedule.kappa_end='half' is not a number"),
        ("auto_eps.eps_maxoff=some", "auto_eps.eps_maxoff='some' is not a number"),
        ("dataset.batch_size=2.5", "dataset.batch_size=2.5 must be a positive integer"),
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 must be > 0"),
        (
            "dataset.train_subset=100000",
            "dataset.train_subset=100000 is larger than the mnist train split (300 examples)",
        ),
        ("dataset.augment=maybe", "dataset.augment='maybe' is not allowed; use true, false or null"),
        ("ckpt_path=/nonexistent/last.ckpt", "ckpt_path=/nonexistent/last.ckpt: no such file"),
        ("reweight.gamma=-1", "reweight.gamma=-1 must be >= 0"),
        ("bounds.compile=maybe", "bounds.compile='maybe' must be true or false"),
        ("dataset.device_resident=gpu", "dataset.device_resident='gpu' is not allowed"),
    ],
)
def test_bad_values_fail_before_training_with_a_named_error(override, message, fake_data_root, tmp_path):
    cfg = compose_train(tiny_run_overrides(fake_data_root, override), tmp_path)
    with pytest.raises(CertlightError, match=re.escape(message)):
        build_run(cfg)


def test_fraction_epsilons_are_parsed(fake_data_root, tmp_path):
    run = build_run(compose_train(tiny_run_overrides(fake_data_root, "eps.train=8.8/255", "eps.eval=8/255"), tmp_path))
    assert run.eps_train == pytest.approx(8.8 / 255) and run.module.eps_eval == pytest.approx(8 / 255)


def test_wandb_without_a_login_says_how_to_log_offline(fake_data_root, tmp_path, monkeypatch):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a W&B key
    monkeypatch.delenv("NETRC", raising=False)
    cfg = compose_train(tiny_run_overrides(fake_data_root, "logger=wandb"), tmp_path)
    with pytest.raises(CertlightError, match=re.escape("logger=wandb needs a W&B login")) as error:
        build_run(cfg)
    assert "WANDB_MODE=offline" in str(error.value)
    monkeypatch.setenv("WANDB_MODE", "offline")
    build_run(cfg)


def test_the_method_node_builds_the_whole_module_from_the_top_level_groups(fake_data_root, tmp_path):
    overrides = tiny_run_overrides(
        fake_data_root, "method=sabr", "reweight.gamma=5", "optimizer.lr=0.002", "schedule.kappa_end=0.25"
    )
    run = build_run(compose_train(overrides, tmp_path), tmp_path)
    module = run.module
    assert type(module).__name__ == "SABRModule" and module.reweight.gamma == 5.0
    assert module.schedule.kappa_end == 0.25 and module.schedule.eps_train == pytest.approx(
        0.1
    )  # eps.train of the tiny run
    assert module.auto_eps is None  # auto_eps.eps_maxoff=0: off, no table built
    assert module.regulariser is not None and module.l1 == 1e-6  # fast_ibp's shared options, SABR's own l1
    assert module.configure_optimizers()["optimizer"].param_groups[0]["lr"] == 0.002
    record = module.run_config
    assert record["method_name"] == "sabr" and "reweight" not in record["method"] and record["reweight"]["gamma"] == 5
    on = build_run(
        compose_train(tiny_run_overrides(fake_data_root, "auto_eps.eps_maxoff=0.05"), tmp_path / "on"), tmp_path / "on"
    )
    assert on.module.auto_eps.offsets.shape == (300,)  # one offset per training example of the fixture


@pytest.mark.slow
def test_a_wheel_install_runs_its_console_script(tmp_path):
    """`pip install .` (not -e): the config groups travel inside the package."""
    import subprocess
    import sys

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert (target / "certlight" / "conf" / "train.yaml").is_file()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(target / "bin" / "certlight-train"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sabr" in proc.stdout  # the method group's options, read from the packaged conf/
