"""Evaluate a checkpoint: clean, PGD and verified error (IBP, CROWN-IBP, CROWN, α-CROWN, and a
cascade of them) at one or more eps.

    python -m certlight.verify ckpt=PATH eps.eval=[0.3,0.35,0.4]

Without ``eps.eval`` the radius is the run's own (from the config in the checkpoint).

Writes ``verify.json`` in the Hydra output directory and prints a table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from tqdm import tqdm

from certlight.bounds import BOUND_METHODS
from certlight.checkpoints import epochs_completed, load_checkpoint
from certlight.config import build, data_root, parse_epsilon
from certlight.data import CertifiedDataModule
from certlight.errors import CertlightError
from certlight.evaluation import certify_dataset, hidden_neurons
from certlight.evaluation.cascade import cascade_certify
from certlight.validate import integer_at_least, optional_integer_at_least


def eps_list(value, default) -> list[float]:
    values = value if isinstance(value, (list, ListConfig)) else [default if value is None else value]
    return [parse_epsilon(v, "eps.eval") for v in values]


def verify(cfg: DictConfig, output_dir: Path) -> dict:
    if not cfg.get("ckpt"):
        raise CertlightError("ckpt=PATH is required: the checkpoint to verify, e.g. ckpt=outputs/<date>/<time>/checkpoints/last.ckpt")
    ckpt = str(Path(hydra.utils.to_absolute_path(str(cfg.ckpt))))
    checkpoint = load_checkpoint(ckpt, "ckpt")
    train_cfg = OmegaConf.create(checkpoint["certlight_config"])
    allowed = (*BOUND_METHODS, "cascade")
    unknown = [m for m in (*cfg.methods, *cfg.cascade_stages) if m not in allowed]
    if unknown or "cascade" in cfg.cascade_stages:
        raise CertlightError(f"methods / cascade_stages: {unknown or ['cascade']} not allowed; methods from {', '.join(allowed)}, stages from {', '.join(BOUND_METHODS)}")
    integer_at_least(cfg.batch_size, "batch_size", 1)
    optional_integer_at_least(cfg.test_subset, "test_subset", 1)
    datamodule = CertifiedDataModule(
        train_cfg.dataset.name, root=data_root(cfg), eval_batch_size=cfg.batch_size, test_subset=cfg.test_subset
    )
    datamodule.setup("test")
    info = datamodule.info
    net = build(train_cfg.model, in_channels=info.channels, in_size=info.size, num_classes=info.num_classes)
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    net.eval()
    methods, stages = list(cfg.methods), list(cfg.cascade_stages)
    relus = hidden_neurons(net, datamodule.test_set.__getitems__([0])[0])
    if relus > cfg.crown_max_neurons:
        skipped = [m for m in ("crown", "alpha_crown") if m in methods or m in stages]
        if skipped:
            print(f"{', '.join(skipped)} skipped: {relus} ReLUs > crown_max_neurons={cfg.crown_max_neurons}")
        methods, stages = [m for m in methods if m not in skipped], [m for m in stages if m not in skipped]
    eps_values = eps_list(cfg.eps.eval, train_cfg.eps.eval)
    bounder = build(cfg.bounds)(net=net)
    single = [m for m in methods if m != "cascade"]
    rows = []
    if single:
        batches = tqdm(datamodule.test_dataloader(), desc="verify", unit="batch")
        rows = certify_dataset(net, bounder, batches, info.mean, info.std, eps_values, single, cfg.pgd.steps, cfg.pgd.restarts)
    if "cascade" in methods:
        batches = tqdm(datamodule.test_dataloader(), desc="cascade", unit="batch")
        cascade_rows = cascade_certify(net, bounder, batches, info.mean, info.std, eps_values, stages, cfg.pgd.steps, cfg.pgd.restarts)
        rows = merge_cascade(rows, cascade_rows)
    epochs = epochs_completed(checkpoint)
    report = {
        "ckpt": ckpt,
        "methods": methods,
        # What the checkpoint is: how far its run got, and on how many examples it trained.
        "epochs_completed": epochs,
        "complete": epochs >= int(train_cfg.trainer.max_epochs),
        "train_examples": train_cfg.dataset.train_subset or datamodule.num_train_total,
        "train_examples_total": datamodule.num_train_total,
        "test_examples_total": datamodule.num_test_total,
        "results": rows,
        "train_config": OmegaConf.to_container(train_cfg),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "verify.json").write_text(json.dumps(report, indent=2))
    print(f"{ckpt}: {epochs} of {train_cfg.trainer.max_epochs} epochs trained; "
          f"{rows[0]['n'] if rows else 0} test examples")
    print(format_table(rows, methods))
    if "cascade" in methods:
        print(format_cascade(rows))
    print(f"written {output_dir / 'verify.json'}")
    return report


def merge_cascade(rows: list[dict], cascade_rows: list[dict]) -> list[dict]:
    """The cascade's column and stage records beside the single methods' (or alone)."""
    if not rows:
        return [{**c, "verified_err": {**c["verified_err"], "best": c["verified_err"]["cascade"]}} for c in cascade_rows]
    for row, cascade in zip(rows, cascade_rows):
        row["verified_err"]["cascade"] = cascade["verified_err"]["cascade"]
        row["cascade"] = cascade["cascade"]
    return rows


def format_table(rows: list[dict], methods: list[str]) -> str:
    columns = ["eps_eval", "clean err", "PGD err", *[f"verified ({m})" for m in methods], "verified (best)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row['eps_eval']:.4g}", f"{100 * row['clean_err']:.2f}%", f"{100 * row['pgd_err']:.2f}%"]
        cells += [f"{100 * row['verified_err'][m]:.2f}%" for m in (*methods, "best")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_cascade(rows: list[dict]) -> str:
    """Per eps and stage: examples it ran on, how many it verified, time, peak memory."""
    lines = ["| eps_eval | stage | ran on | verified | seconds | peak memory (MiB) |", "|---|---|---|---|---|---|"]
    for row in rows:
        for stage in row["cascade"]:
            lines.append(f"| {row['eps_eval']:.4g} | {stage['stage']} | {stage['ran_on']} | {stage['verified']} | {stage['seconds']:.1f} | {stage['peak_memory_mb']:.0f} |")
    return "\n".join(lines)


# An absolute path: the console script imports this module, so Hydra cannot find conf/ by the
# caller's file (the repository's conf/, as an editable install keeps it).
CONF = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="verify")
def main(cfg: DictConfig) -> None:
    try:
        verify(cfg, Path(HydraConfig.get().runtime.output_dir))
    except CertlightError as error:
        sys.exit(f"certlight.verify: error: {error}")


if __name__ == "__main__":
    main()
