"""Assemble datamodule, network, LightningModule and Trainer from a composed Hydra config, fit,
and write ``results.json`` with what was actually done — also when the run is stopped."""

from __future__ import annotations

import json
import logging
import netrc
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import ProgressBar

from certlight.callbacks import EpochTimer
from certlight.config import build, data_root
from certlight.data import CertifiedDataModule
from certlight.errors import CertlightError
from certlight.methods import CertifiedModule
from certlight.runs.checkpoints import WEIGHTS_FILE, epochs_completed, load_checkpoint, resume_changes, write_weights
from certlight.runs.devices import claim_gpu
from certlight.runs.host_memory import keep_freed_memory
from certlight.runs.run_keys import method_label
from certlight.validate import integer_at_least, number, parse_epsilon

log = logging.getLogger("certlight")


class RunInterrupted(CertlightError):
    """Training stopped before its last epoch (SIGTERM, Ctrl-C): results.json says so."""


@dataclass
class Run:
    datamodule: CertifiedDataModule
    module: CertifiedModule
    trainer: pl.Trainer
    eps_train: float
    eps_eval: float
    ckpt_path: str | None


def build_datamodule(dataset: DictConfig, root: str, seed: int, stage: str = "fit", **overrides) -> CertifiedDataModule:
    """The datamodule of a ``dataset`` config node (training's, or a checkpoint's with
    ``overrides`` for evaluation), set up now so missing files fail before anything runs."""
    # Configs written before the datasets' default radii moved to eps.* carry them in the node.
    node = OmegaConf.masked_copy(dataset, [key for key in dataset if key != "default_eps"])
    datamodule = build(node, root=root, seed=seed, **overrides)
    datamodule.setup(stage)
    return datamodule


def build_module(
    cfg: DictConfig, datamodule: CertifiedDataModule, eps_train: float, eps_eval: float
) -> CertifiedModule:
    """The method node builds everything it takes in one instantiate; the run adds only what it
    knows from the data (input shape, mean/std, example count) and the parsed radii."""
    info = datamodule.info
    return build(
        cfg.method,
        net={"in_channels": info.channels, "in_size": info.size, "num_classes": info.num_classes},
        mean=list(info.mean),
        std=list(info.std),
        eps_eval=eps_eval,
        schedule={"eps_train": eps_train},
        auto_eps={"num_examples": datamodule.num_train_total, "eps_train": eps_train},
    )


# The method node repeats these top-level groups (train.yaml): records keep each value once,
# under the key the user types, as runs recorded it before the node nested them.
MIRRORED_IN_METHOD = ("net", "optimizer", "lr_scheduler", "reweight", "auto_eps", "bounds", "schedule")


def record_config(cfg: DictConfig) -> dict:
    """The composed config as results.json and checkpoints keep it, with the method's name as
    chosen (``method=...``)."""
    config = OmegaConf.to_container(cfg, resolve=True)
    for key in MIRRORED_IN_METHOD:
        config["method"].pop(key, None)
    config["method_name"] = HydraConfig.get().runtime.choices.get("method") if HydraConfig.initialized() else None
    return config


def check_wandb(cfg: DictConfig) -> None:
    """Without a login or offline mode W&B would ask on the terminal (or fail deep inside
    Lightning): say so before anything starts."""
    if "wandb" not in (cfg.get("logger") or {}):
        return
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun") or cfg.logger.wandb.get("offline"):
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        logged_in = netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        logged_in = False
    if not (os.environ.get("WANDB_API_KEY") or logged_in):
        raise CertlightError(
            "logger=wandb needs a W&B login: run `wandb login` (or set WANDB_API_KEY), or log without an "
            "account with WANDB_MODE=offline (upload later with `wandb sync`), or use logger=csv / logger=tensorboard"
        )


def check_values(cfg: DictConfig) -> tuple[float, float]:
    """The values no class below checks, each with its config key."""
    eps_train = parse_epsilon(cfg.eps.train, "eps.train")
    eps_eval = parse_epsilon(cfg.eps.eval, "eps.eval")
    integer_at_least(cfg.trainer.max_epochs, "trainer.max_epochs", 1)
    integer_at_least(cfg.seed, "seed", 0)
    if "lr" in cfg.optimizer:
        number(cfg.optimizer.lr, "optimizer.lr", minimum=0, exclusive_minimum=True)
    check_wandb(cfg)
    return eps_train, eps_eval


def run_parts(cfg: DictConfig, run_config: dict, output_dir: Path) -> tuple[list[dict], str | None]:
    """Where each part of the run lives, with the config changes a resume made; refuses a
    resume that would silently change what the run computes."""
    if not cfg.get("ckpt_path"):
        return [{"output_dir": str(output_dir), "first_epoch": 0}], None
    path = to_absolute_path(str(cfg.ckpt_path))
    checkpoint = load_checkpoint(path, "ckpt_path")
    allowed = cfg.get("allow_resume_changes") or []
    changes = resume_changes(checkpoint["certlight_config"], run_config, [str(k) for k in allowed])
    done = epochs_completed(checkpoint)
    if done >= int(cfg.trainer.max_epochs):
        raise CertlightError(
            f"ckpt_path={cfg.ckpt_path}: that run already finished {done} "
            f"of trainer.max_epochs={cfg.trainer.max_epochs} epochs; "
            "nothing to resume (to train longer: trainer.max_epochs=N allow_resume_changes=[trainer.max_epochs])"
        )
    before = checkpoint.get("certlight_parts") or [{"output_dir": str(Path(path).parents[1]), "first_epoch": 0}]
    part = {"output_dir": str(output_dir), "first_epoch": done, "resumed_from": path, "config_changes": changes}
    return [*before, part], path


def build_run(cfg: DictConfig, output_dir: Path | None = None) -> Run:
    """Check every value and build everything before any training starts."""
    output_dir = Path(output_dir) if output_dir is not None else Path.cwd()
    eps_train, eps_eval = check_values(cfg)
    run_config = record_config(cfg)
    parts, ckpt_path = run_parts(cfg, run_config, output_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg.dataset, data_root(cfg), cfg.seed)
    module = build_module(cfg, datamodule, eps_train, eps_eval)
    module.run_config, module.run_parts = run_config, parts
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if cfg.trainer.get("enable_progress_bar", True) is False:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = [build(lg) for lg in (cfg.get("logger") or {}).values()]
    placement = {}
    if cfg.get("parallel_gpus"):
        # Jobs side by side (hydra/launcher=gpu_parallel): this job's own GPU, locked in the sweep folder.
        if cfg.trainer.get("accelerator") not in ("gpu", "cuda") or cfg.trainer.get("strategy") not in (None, "auto"):
            raise CertlightError(
                f"parallel_gpus={cfg.parallel_gpus} gives each job one GPU: it needs trainer=gpu, "
                f"not trainer.accelerator={cfg.trainer.get('accelerator')} / strategy {cfg.trainer.get('strategy')}"
            )
        placement["devices"] = [claim_gpu(output_dir.parent / ".gpu_locks", cfg.parallel_gpus)]
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False, **placement)
    if isinstance(trainer.accelerator, CPUAccelerator) and keep_freed_memory():
        log.info(
            "training on the CPU: freed tensor memory is kept for "
            "reuse (glibc mallopt; see certlight/runs/host_memory.py)"
        )
    return Run(datamodule, module, trainer, eps_train, eps_eval, ckpt_path)


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def results_record(cfg: DictConfig, run: Run, metrics: dict, status: str, wall: float) -> dict:
    """What was actually done: epochs finished, examples trained on and evaluated, every part."""
    module, datamodule = run.module, run.datamodule
    return {
        "config": module.run_config,
        "status": status,
        "complete": status == "finished",
        "method": method_label(module.run_config),
        "dataset": datamodule.info.name,
        "eps_train": run.eps_train,
        "eps_eval": run.eps_eval,
        "seed": cfg.seed,
        "epochs": module.epochs_completed,
        "max_epochs": cfg.trainer.max_epochs,
        "train_examples": len(datamodule.train_set),
        "train_examples_total": datamodule.num_train_total,
        "test_examples": len(datamodule.test_set),
        "clean_err": metrics.get("test/clean_err"),
        "verified_err": metrics.get("test/verified_err"),
        "verified_err_by_method": {
            key.removeprefix("test/verified_err_"): value
            for key, value in metrics.items()
            if key.startswith("test/verified_err_")
        },
        "parts": module.run_parts,
        "data_root": str(datamodule.root),
        "wall_time_s": round(wall, 1),
        "epoch_time": next((c.summary() for c in run.trainer.callbacks if isinstance(c, EpochTimer)), {}),
        "hardware": hardware(),
        "torch": torch.__version__,
    }


def write_results(output_dir: Path, results: dict) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))


def train(cfg: DictConfig, output_dir: Path) -> dict:
    """Fit, evaluate the final model on the test set, and write ``results.json`` and the final
    weights (``weights.pt``, what ``verify`` re-judges a run from).

    A run stopped early (SIGTERM, Ctrl-C, an error) still writes ``results.json``, marked
    incomplete, with the numbers of its last finished epoch, and then raises.
    """
    run = build_run(cfg, output_dir)
    log.info(f"run folder: {output_dir}" + (f" (resuming {run.ckpt_path})" if run.ckpt_path else ""))
    start = time.time()
    try:
        run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=run.ckpt_path)
    except BaseException as stop:
        stopped = isinstance(stop, (SystemExit, KeyboardInterrupt))  # Lightning's SIGTERM and Ctrl-C
        if run.trainer.is_global_zero:
            write_results(
                output_dir,
                results_record(
                    cfg, run, run.module.last_epoch_metrics, "interrupted" if stopped else "failed", time.time() - start
                ),
            )
        if not stopped:
            raise
        last = output_dir / "checkpoints" / "last.ckpt"
        raise RunInterrupted(
            f"training stopped after {run.module.epochs_completed} finished epoch(s) of {cfg.trainer.max_epochs}; "
            f"{output_dir / 'results.json'} is marked incomplete; resume with ckpt_path={last}"
        ) from None
    wall = time.time() - start
    metrics = run.trainer.validate(run.module, datamodule=run.datamodule, verbose=False)[0]
    results = results_record(cfg, run, metrics, "finished", wall)
    if run.trainer.is_global_zero:
        write_results(output_dir, results)
        write_weights(output_dir / WEIGHTS_FILE, run.module.net.state_dict(), run.module.run_config)
    log.info(
        f"finished {results['epochs']} epochs: clean error {100 * results['clean_err']:.2f}%, verified error "
        f"{100 * results['verified_err']:.2f}% at eps_eval={run.eps_eval:g}; results in {output_dir / 'results.json'}"
    )
    return results
