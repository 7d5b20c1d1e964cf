"""Optuna search (persistent study, failed trials recorded), SLURM / local submitit launchers,
and one GPU per side-by-side job."""

import fcntl
import os
import subprocess
import sys

import optuna
import pytest
from hydra import compose, initialize_config_dir

from certlight.report import main as report
from certlight.runs.devices import claim_gpu, release_gpu

from conftest import REPO, tiny_run_overrides

TINY = ("dataset.train_subset=100", "dataset.test_subset=50", "trainer.max_epochs=1", "schedule.ramp_epochs=0")


def run_train(*overrides, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_optuna_search_records_failed_trials_and_resumes_its_study(fake_data_root, tmp_path, capsys):
    sweep = tmp_path / "search"
    # eps_maxoff 0.5 > eps.train 0.1 is refused: those trials fail, the others finish.
    overrides = [
        "-m",
        "hparams_search=tactics_optuna",
        f"hydra.sweep.dir={sweep}",
        "auto_eps.eps_maxoff=choice(0.05,0.5)",
        "hydra.sweeper.sampler.seed=3",
        *tiny_run_overrides(fake_data_root, *TINY),
    ]
    run_train(*overrides, "hydra.sweeper.n_trials=4", cwd=tmp_path)
    study = optuna.load_study(study_name="tactics", storage=f"sqlite:///{sweep / 'study.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 4
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.params["auto_eps.eps_maxoff"] == 0.05 for t in finished)
    assert all(0 <= t.value <= 1 for t in finished)  # the verified error the runs returned

    run_train(*overrides, "hydra.sweeper.n_trials=1", cwd=tmp_path)  # the same command continues the study
    resumed = optuna.load_study(study_name="tactics", storage=f"sqlite:///{sweep / 'study.db'}")
    assert len(resumed.trials) == 5
    # No trial folder of the first part was overwritten by the second part's (job numbers restart).
    assert len(list(sweep.glob("*/results.json"))) == sum(
        t.state == optuna.trial.TrialState.COMPLETE for t in resumed.trials
    )

    assert report(["--study", str(sweep / "study.db"), "--plot", str(tmp_path / "study.png")]) == 0
    out = capsys.readouterr().out
    assert "| rank | trial | objective |" in out and "fail" in out
    assert (tmp_path / "study.png").stat().st_size > 0


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_multirun(fake_data_root, tmp_path):
    sweep = tmp_path / "sweep"
    run_train(
        "-m",
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={sweep}",
        "seed=0,1",
        *tiny_run_overrides(fake_data_root, *TINY),
        cwd=tmp_path,
    )
    assert sorted(p.parent.name for p in sweep.glob("*/results.json")) == ["0", "1"]


def test_slurm_launcher_takes_nodes_and_gpus_from_the_trainer():
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp",
                "trainer.devices=4",
                "+trainer.num_nodes=2",
                "hydra.launcher.partition=gpu",
            ],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node, launcher.partition) == (2, 4, 4, "gpu")


def test_gpu_parallel_launcher_runs_one_job_per_gpu():
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=gpu_parallel", "parallel_gpus=3"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 3


def test_a_job_claims_a_gpu_no_other_job_holds(tmp_path):
    other_job = open(tmp_path / "gpu0.lock", "w")
    fcntl.flock(other_job, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert claim_gpu(tmp_path, 2) == 1
        with pytest.raises(TimeoutError, match="no free GPU among 1"):
            claim_gpu(tmp_path, 1, poll_s=0.01, timeout_s=0.05)
    finally:
        release_gpu()
        other_job.close()
    assert claim_gpu(tmp_path, 2) == 0  # freed when the other job's process lets go
    release_gpu()


def test_side_by_side_jobs_on_a_cpu_trainer_are_refused_in_one_line(fake_data_root, tmp_path):
    from certlight.errors import CertlightError
    from certlight.runs.pipeline import build_run

    from conftest import compose_train

    with pytest.raises(
        CertlightError,
        match="parallel_gpus=2 gives each job one GPU: it needs trainer=gpu, not trainer.accelerator=cpu",
    ):
        build_run(compose_train(tiny_run_overrides(fake_data_root, "parallel_gpus=2"), tmp_path), tmp_path)


def test_slurm_without_slurm_stops_in_one_line_before_launching(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from certlight.runs.launchers import LauncherCheck

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert "LauncherCheck" in cfg.hydra.callbacks.launcher_check._target_  # train.yaml installs the check
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    with pytest.raises(SystemExit, match="hydra/launcher=slurm needs SLURM, but sbatch and srun are not on PATH"):
        LauncherCheck().on_multirun_start(cfg)
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        local = compose("train", overrides=["hydra/launcher=submitit_local"], return_hydra_config=True)
    LauncherCheck().on_multirun_start(local)  # a launcher that needs nothing from the machine passes
