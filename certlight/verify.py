"""Evaluate a trained network: clean, PGD and verified error (IBP, CROWN-IBP, CROWN, α-CROWN, and a
cascade of them) at one or more eps.

    python -m certlight.verify ckpt=RUN_FOLDER eps.eval=[0.3,0.35,0.4]

``ckpt`` is a run folder, its ``weights.pt`` or a training checkpoint (``.ckpt``). Without
``eps.eval`` the radius is the run's own (from its training config).

Writes ``verify.json`` in the Hydra output directory and prints a table.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from certlight.bounds import BOUND_METHODS
from certlight.runs.checkpoints import TrainedModel, load_trained
from certlight.config import CONF_DIR, build, data_root
from certlight.data import CertifiedDataModule
from certlight.errors import CertlightError, keyed
from certlight.evaluation import certify_dataset, hidden_neurons
from certlight.evaluation.cascade import cascade_certify
from certlight.runs.pipeline import build_datamodule
from certlight.validate import integer_at_least, optional_integer_at_least, parse_epsilon

CASCADE = "cascade"


@dataclass(frozen=True)
class Request:
    """What to compute, checked: the single methods, the cascade's stages, the radii."""

    methods: list[str]
    stages: list[str]
    eps_values: list[float]


def check_request(cfg: DictConfig, train_cfg: DictConfig) -> Request:
    allowed = (*BOUND_METHODS, CASCADE)
    unknown = [m for m in (*cfg.methods, *cfg.cascade_stages) if m not in allowed]
    if unknown or CASCADE in cfg.cascade_stages:
        raise CertlightError(
            f"methods / cascade_stages: {unknown or [CASCADE]} not allowed; methods from {', '.join(allowed)}, stages from {', '.join(BOUND_METHODS)}"
        )
    integer_at_least(cfg.batch_size, "batch_size", 1)
    optional_integer_at_least(cfg.test_subset, "test_subset", 1)
    integer_at_least(cfg.seed, "seed", 0)
    value = cfg.eps.eval
    values = value if isinstance(value, (list, ListConfig)) else [train_cfg.eps.eval if value is None else value]
    return Request(list(cfg.methods), list(cfg.cascade_stages), [parse_epsilon(v, "eps.eval") for v in values])


def load_network(trained: TrainedModel, datamodule: CertifiedDataModule) -> torch.nn.Module:
    info = datamodule.info
    net = build(OmegaConf.create(trained.config["model"]), in_channels=info.channels, in_size=info.size, num_classes=info.num_classes)
    net.load_state_dict(trained.net_state)
    return net.eval()


def affordable(request: Request, relus: int, limit: int) -> Request:
    """Full CROWN and α-CROWN dropped (and said so) for networks with more than ``limit`` ReLUs."""
    if relus <= limit:
        return request
    skipped = [m for m in ("crown", "alpha_crown") if m in request.methods or m in request.stages]
    if skipped:
        print(f"{', '.join(skipped)} skipped: {relus} ReLUs > crown_max_neurons={limit}")
    keep = [m for m in request.methods if m not in skipped], [m for m in request.stages if m not in skipped]
    return Request(*keep, request.eps_values)


def check_backend(bounder, request: Request, backend: str) -> None:
    """Refuse, before anything runs, a method the chosen backend cannot compute."""
    wanted = [m for m in request.methods if m != CASCADE] + (request.stages if CASCADE in request.methods else [])
    missing = sorted(set(wanted) - set(bounder.methods), key=wanted.index)
    if missing:
        raise CertlightError(
            f"bounds.backend={backend} cannot compute {', '.join(missing)} (it offers {', '.join(bounder.methods)}); "
            "use bounds.backend=native, or leave them out of methods / cascade_stages"
        )


def evaluate(net, bounder, datamodule: CertifiedDataModule, request: Request, cfg: DictConfig) -> list[dict]:
    """The table's rows: single methods, then the cascade beside them. The attack's random
    starts come from a generator seeded by ``seed``, so two runs report the same numbers."""
    info = datamodule.info
    single = [m for m in request.methods if m != CASCADE]
    rows = []
    if single:
        batches = tqdm(datamodule.test_dataloader(), desc="verify", unit="batch")
        generator = torch.Generator().manual_seed(cfg.seed)
        rows = certify_dataset(net, bounder, batches, info.mean, info.std, request.eps_values, single, cfg.pgd.steps, cfg.pgd.restarts, generator)
    if CASCADE in request.methods:
        batches = tqdm(datamodule.test_dataloader(), desc="cascade", unit="batch")
        generator = torch.Generator().manual_seed(cfg.seed)
        cascade_rows = cascade_certify(net, bounder, batches, info.mean, info.std, request.eps_values, request.stages, cfg.pgd.steps, cfg.pgd.restarts, generator)
        rows = merge_cascade(rows, cascade_rows)
    return rows


def verify(cfg: DictConfig, output_dir: Path) -> dict:
    if not cfg.get("ckpt"):
        raise CertlightError("ckpt=PATH is required: a run folder, its weights.pt or a checkpoint, e.g. ckpt=outputs/<date>/<time>")
    trained = load_trained(hydra.utils.to_absolute_path(str(cfg.ckpt)))
    train_cfg = OmegaConf.create(trained.config)
    request = check_request(cfg, train_cfg)
    # The training run's own data path, with only what evaluation changes overridden.
    datamodule = build_datamodule(
        train_cfg.dataset, data_root(cfg), int(train_cfg.seed), stage="test",
        eval_batch_size=cfg.batch_size, test_subset=cfg.test_subset, device_resident=False, download=False,
    )
    net = load_network(trained, datamodule)
    request = affordable(request, hidden_neurons(net, datamodule.test_set.__getitems__([0])[0]), cfg.crown_max_neurons)
    with keyed("bounds"):
        bounder = build(cfg.bounds)(net=net)
    check_backend(bounder, request, cfg.bounds.backend)
    rows = evaluate(net, bounder, datamodule, request, cfg)
    report = {
        "ckpt": trained.source,
        "methods": request.methods,
        # What the network is: how far its run got, and on how many examples it trained.
        "epochs_completed": trained.epochs_completed,
        "complete": trained.epochs_completed >= trained.max_epochs,
        "train_examples": train_cfg.dataset.train_subset or datamodule.num_train_total,
        "train_examples_total": datamodule.num_train_total,
        "test_examples_total": datamodule.num_test_total,
        "seed": cfg.seed,
        "results": rows,
        "train_config": trained.config,
    }
    write_report(report, output_dir)
    print_report(report)
    print(f"written {output_dir / 'verify.json'}")
    return report


def write_report(report: dict, output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "verify.json").write_text(json.dumps(report, indent=2))


def print_report(report: dict) -> None:
    rows = report["results"]
    print(f"{report['ckpt']}: {report['epochs_completed']} of {report['train_config']['trainer']['max_epochs']} epochs trained; "
          f"{rows[0]['n'] if rows else 0} test examples")
    print(format_table(rows, report["methods"]))
    if CASCADE in report["methods"]:
        print(format_cascade(rows))


def merge_cascade(rows: list[dict], cascade_rows: list[dict]) -> list[dict]:
    """The cascade's column and stage records beside the single methods' (or alone)."""
    if not rows:
        return [{**c, "verified_err": {**c["verified_err"], "best": c["verified_err"][CASCADE]}} for c in cascade_rows]
    for row, cascade in zip(rows, cascade_rows):
        row["verified_err"][CASCADE] = cascade["verified_err"][CASCADE]
        row[CASCADE] = cascade[CASCADE]
    return rows


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def format_table(rows: list[dict], methods: list[str]) -> str:
    columns = ["eps_eval", "clean err", "PGD err", *[f"verified ({m})" for m in methods], "verified (best)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row['eps_eval']:.4g}", _percent(row["clean_err"]), _percent(row.get("pgd_err"))]
        cells += [_percent(row["verified_err"][m]) for m in (*methods, "best")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_cascade(rows: list[dict]) -> str:
    """Per eps and stage: examples it ran on, how many it verified, time, peak memory."""
    lines = ["| eps_eval | stage | ran on | verified | seconds | peak memory (MiB) |", "|---|---|---|---|---|---|"]
    for row in rows:
        for stage in row[CASCADE]:
            lines.append(f"| {row['eps_eval']:.4g} | {stage['stage']} | {stage['ran_on']} | {stage['verified']} | {stage['seconds']:.1f} | {stage['peak_memory_mb']:.0f} |")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="verify")
def main(cfg: DictConfig) -> None:
    try:
        verify(cfg, Path(HydraConfig.get().runtime.output_dir))
    except CertlightError as error:
        sys.exit(f"certlight.verify: error: {error}")


if __name__ == "__main__":
    main()
