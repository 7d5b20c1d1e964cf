"""Assemble datamodule, network, LightningModule and Trainer from a composed Hydra config."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from certlight.callbacks import ScheduleCallback
from certlight.config import build, data_root, integer_at_least, parse_epsilon
from certlight.data import CertifiedDataModule
from certlight.modules import AutoEpsilon, CertifiedModule


@dataclass
class Run:
    datamodule: CertifiedDataModule
    module: CertifiedModule
    trainer: pl.Trainer
    eps_train: float
    eps_eval: float


def build_datamodule(cfg: DictConfig) -> CertifiedDataModule:
    datamodule = build(cfg.dataset, root=data_root(cfg))
    datamodule.setup("fit")  # fails now, with the expected path, if the files are missing
    return datamodule


def build_module(cfg: DictConfig, datamodule: CertifiedDataModule, eps_train: float, eps_eval: float) -> CertifiedModule:
    info = datamodule.info
    net = build(cfg.model, in_channels=info.channels, in_size=info.size, num_classes=info.num_classes)
    eps_maxoff = float(cfg.auto_eps.eps_maxoff)
    auto_eps = AutoEpsilon(datamodule.num_train_total, eps_maxoff, eps_train)
    return build(
        cfg.method,
        net=net,
        mean=info.mean,
        std=info.std,
        eps_eval=eps_eval,
        optimizer=build(cfg.optimizer),
        lr_scheduler=build(cfg.lr_scheduler) if cfg.get("lr_scheduler") else None,
        reweight=build(cfg.reweight),
        auto_eps=auto_eps if eps_maxoff > 0 else None,
        bounds_backend=cfg.bounds.backend,
        compile_bounds=cfg.bounds.compile,
    )


def build_run(cfg: DictConfig) -> Run:
    """Check every value and build everything before any training starts."""
    eps_train = parse_epsilon(cfg.eps.train, "eps.train")
    eps_eval = parse_epsilon(cfg.eps.eval, "eps.eval")
    integer_at_least(cfg.trainer.max_epochs, "trainer.max_epochs", 1)
    pl.seed_everything(integer_at_least(cfg.seed, "seed", 0), workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule, eps_train, eps_eval)
    module.run_config = OmegaConf.to_container(cfg, resolve=True)
    schedule = build(cfg.schedule, eps_train=eps_train)
    callbacks = [ScheduleCallback(schedule)] + [build(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [build(lg) for lg in (cfg.get("logger") or {}).values()]
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return Run(datamodule, module, trainer, eps_train, eps_eval)


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


def train(cfg: DictConfig, output_dir: Path) -> dict:
    """Fit, evaluate the final model on the test set, and write ``results.json``."""
    run = build_run(cfg)
    start = time.time()
    run.trainer.fit(run.module, datamodule=run.datamodule, ckpt_path=cfg.get("ckpt_path"))
    wall = time.time() - start
    metrics = run.trainer.validate(run.module, datamodule=run.datamodule, verbose=False)[0]
    results = {
        "config": run.module.run_config,
        "method": cfg.method._target_.rsplit(".", 1)[-1],
        "dataset": run.datamodule.info.name,
        "eps_train": run.eps_train,
        "eps_eval": run.eps_eval,
        "seed": cfg.seed,
        "epochs": run.trainer.current_epoch,
        "clean_err": metrics["val/clean_err"],
        "verified_err": metrics["val/verified_err"],
        "verified_err_by_method": {
            key.removeprefix("val/verified_err_"): value for key, value in metrics.items() if key.startswith("val/verified_err_")
        },
        "wall_time_s": round(wall, 1),
        "hardware": hardware(),
        "torch": torch.__version__,
    }
    if run.trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results
