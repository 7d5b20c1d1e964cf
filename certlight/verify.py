"""Evaluate a trained network: clean, PGD and verified error (IBP, CROWN-IBP, CROWN, α-CROWN, and a
cascade of them) at one or more eps.

    python -m certlight.verify ckpt=RUN_FOLDER eps.eval=[0.3,0.35,0.4]

``ckpt`` is a run folder, its ``weights.pt`` or a training checkpoint (``.ckpt``). Without
``eps.eval`` the radius is the run's own (from its training config).

Writes ``verify.json`` in the Hydra output directory and prints a table.
"""

from __future__ import annotations

import dataclasses
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
from certlight.config import CONF_DIR, build, data_root
from certlight.data import CertifiedDataModule
from certlight.errors import CertlightError, keyed
from certlight.evaluation import certify_dataset, hidden_neurons
from certlight.evaluation.bab import BaBOptions
from certlight.evaluation.cascade import COMPLETE, BaBStage, MILPStage, cascade_certify
from certlight.runs.checkpoints import TrainedModel, load_trained
from certlight.runs.pipeline import build_datamodule
from certlight.validate import integer_at_least, optional_integer_at_least, parse_epsilon

CASCADE = "cascade"
# A complete method asked for alone runs behind the cheap sound bounds: what they verify it would
# verify too, so its column is the same and it runs only on what they leave.
BEHIND = ("ibp", "crown_ibp")


@dataclass(frozen=True)
class Request:
    """What to compute, checked: the single methods, the cascade's stages, the radii."""

    methods: list[str]
    stages: list[str]
    eps_values: list[float]


def check_request(cfg: DictConfig, train_cfg: DictConfig) -> Request:
    allowed = (*BOUND_METHODS, *COMPLETE, CASCADE)
    unknown = [m for m in (*cfg.methods, *cfg.cascade_stages) if m not in allowed]
    if unknown or CASCADE in cfg.cascade_stages:
        raise CertlightError(
            f"methods / cascade_stages: {unknown or [CASCADE]} not allowed; methods from {', '.join(allowed)}, "
            f"stages from {', '.join((*BOUND_METHODS, *COMPLETE))}"
        )
    late = [m for m in cfg.cascade_stages[:-1] if m in COMPLETE]
    if late:
        raise CertlightError(
            f"cascade_stages: {late[0]} decides every example it runs on, so it can only be the last stage"
        )
    integer_at_least(cfg.batch_size, "batch_size", 1)
    optional_integer_at_least(cfg.test_subset, "test_subset", 1)
    integer_at_least(cfg.seed, "seed", 0)
    value = cfg.eps.eval
    values = value if isinstance(value, (list, ListConfig)) else [train_cfg.eps.eval if value is None else value]
    return Request(list(cfg.methods), list(cfg.cascade_stages), [parse_epsilon(v, "eps.eval") for v in values])


def load_network(trained: TrainedModel, datamodule: CertifiedDataModule) -> torch.nn.Module:
    info = datamodule.info
    net = build(
        OmegaConf.create(trained.config["model"]),
        in_channels=info.channels,
        in_size=info.size,
        num_classes=info.num_classes,
    )
    net.load_state_dict(trained.net_state)
    return net.eval()


def affordable(request: Request, relus: int, limit: int, milp_limit: int) -> Request:
    """Full CROWN, α-CROWN and branch and bound (which starts from CROWN's bounds) dropped (and
    said so) for networks with more than ``limit`` ReLUs; the exact MILP refused in one line above
    ``milp_limit``."""
    if relus > milp_limit and "milp" in (*request.methods, *request.stages):
        raise CertlightError(
            f"milp: the network has {relus} ReLUs, more than milp_max_neurons={milp_limit}; "
            "the exact MILP is for small networks (raise milp_max_neurons to try anyway)"
        )
    if relus <= limit:
        return request
    skipped = [m for m in ("crown", "alpha_crown", "bab") if m in request.methods or m in request.stages]
    if skipped:
        print(f"{', '.join(skipped)} skipped: {relus} ReLUs > crown_max_neurons={limit}")
    keep = [m for m in request.methods if m not in skipped], [m for m in request.stages if m not in skipped]
    return Request(*keep, request.eps_values)


def without_large_milp(complete: dict, relus: int, milp_limit: int) -> dict:
    """``bab`` without its MILP hand-off (and said so) for networks above ``milp_limit`` ReLUs."""
    options = complete["bab"].options
    if relus <= milp_limit or not options.milp_share:
        return complete
    print(f"bab: no MILP hand-off (bab.milp_share=0): {relus} ReLUs > milp_max_neurons={milp_limit}")
    return complete | {"bab": BaBStage(dataclasses.replace(options, milp_share=0))}


def check_backend(bounder, request: Request, backend: str) -> None:
    """Refuse, before anything runs, a method the chosen backend cannot compute."""
    asked = [m for m in request.methods if m != CASCADE] + (request.stages if CASCADE in request.methods else [])
    wanted = [m for m in asked if m not in COMPLETE]  # the complete verifiers work on the network itself
    missing = sorted(set(wanted) - set(bounder.methods), key=wanted.index)
    if missing:
        raise CertlightError(
            f"bounds.backend={backend} cannot compute {', '.join(missing)} (it offers {', '.join(bounder.methods)}); "
            "use bounds.backend=native, or leave them out of methods / cascade_stages"
        )


def evaluate(
    net, bounder, datamodule: CertifiedDataModule, request: Request, cfg: DictConfig, complete: dict
) -> list[dict]:
    """The table's rows: single methods, then the cascade beside them. The attack's random
    starts come from a generator seeded by ``seed``, so two runs report the same numbers."""
    info = datamodule.info

    def attacked(certify, name: str, methods: list[str], **options) -> list[dict]:
        """``certify`` (the single methods' or a cascade's) over the test set, a fresh seeded attack each."""
        batches = tqdm(datamodule.test_dataloader(), desc=name, unit="batch")
        generator = torch.Generator().manual_seed(cfg.seed)
        return certify(
            net,
            bounder,
            batches,
            info.mean,
            info.std,
            request.eps_values,
            methods,
            cfg.pgd.steps,
            cfg.pgd.restarts,
            generator,
            **options,
        )

    def cascade(stages: list[str], name: str) -> list[dict]:
        return attacked(cascade_certify, name, stages, complete=complete)

    single = [m for m in request.methods if m not in (CASCADE, *COMPLETE)]
    rows = attacked(certify_dataset, "verify", single) if single else []
    for verifier in (m for m in request.methods if m in COMPLETE):
        rows = merge_cascade(rows, cascade([*BEHIND, verifier], verifier), verifier)
    if CASCADE in request.methods:
        rows = merge_cascade(rows, cascade(request.stages, CASCADE), CASCADE)
    return rows


def complete_stages(cfg: DictConfig) -> dict:
    """The complete verifiers with the user's limits; bad values named by their key."""
    with keyed("bab"):
        tuning = BaBOptions(**cfg.bab, max_memory_gb=cfg.bounds.max_memory_gb or BaBOptions.max_memory_gb)
    try:
        options = dataclasses.replace(tuning, timeout=cfg.bab_timeout)
    except ValueError as error:
        raise CertlightError(f"bab_{error}") from None
    return {"milp": MILPStage(cfg.milp_timeout), "bab": BaBStage(options)}


def verify(cfg: DictConfig, output_dir: Path) -> dict:
    if not cfg.get("ckpt"):
        raise CertlightError(
            "ckpt=PATH is required: a run folder, its weights.pt or a checkpoint, e.g. ckpt=outputs/<date>/<time>"
        )
    trained = load_trained(hydra.utils.to_absolute_path(str(cfg.ckpt)))
    train_cfg = OmegaConf.create(trained.config)
    request = check_request(cfg, train_cfg)
    complete = complete_stages(cfg)
    # The training run's own data path, with only what evaluation changes overridden.
    datamodule = build_datamodule(
        train_cfg.dataset,
        data_root(cfg),
        int(train_cfg.seed),
        stage="test",
        eval_batch_size=cfg.batch_size,
        test_subset=cfg.test_subset,
        device_resident=False,
        download=False,
    )
    net = load_network(trained, datamodule)
    relus = hidden_neurons(net, datamodule.test_set.__getitems__([0])[0])
    request = affordable(request, relus, cfg.crown_max_neurons, cfg.milp_max_neurons)
    complete = without_large_milp(complete, relus, cfg.milp_max_neurons)
    with keyed("bounds"):
        bounder = build(cfg.bounds)(net=net)
    check_backend(bounder, request, cfg.bounds.backend)
    rows = evaluate(net, bounder, datamodule, request, cfg, complete)
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
    print(
        f"{report['ckpt']}: {report['epochs_completed']} of "
        f"{report['train_config']['trainer']['max_epochs']} epochs trained; "
        f"{rows[0]['n'] if rows else 0} test examples"
    )
    print(format_table(rows, report["methods"]))
    for name in report["methods"]:
        if name == CASCADE or name in COMPLETE:
            print(format_cascade(rows, stage_key(name)))


def stage_key(name: str) -> str:
    """Where a row keeps a cascade's per-stage records: ``cascade``, or ``milp_stages``."""
    return CASCADE if name == CASCADE else f"{name}_stages"


def merge_cascade(rows: list[dict], cascade_rows: list[dict], name: str) -> list[dict]:
    """A cascade's column (``name``: the cascade, or a complete method run behind the cheap
    bounds), its stage records and its falsified error beside the other columns (or alone)."""
    merged = []
    for index, cascade in enumerate(cascade_rows):
        row = (
            rows[index]
            if rows
            else {k: v for k, v in cascade.items() if k not in (CASCADE, "verified_err", "falsified_err")}
            | {"verified_err": {}}
        )
        row["verified_err"][name] = cascade["verified_err"][CASCADE]
        # each column is sound, so the lowest is too (the union of their verified sets may be lower still)
        row["verified_err"]["best"] = min(row["verified_err"].get("best", 1.0), cascade["verified_err"][CASCADE])
        row[stage_key(name)] = cascade[CASCADE]
        if "falsified_err" in cascade:
            row["falsified_err"] = max(row.get("falsified_err", 0.0), cascade["falsified_err"])
        merged.append(row)
    return merged


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def format_table(rows: list[dict], methods: list[str]) -> str:
    falsified = any("falsified_err" in row for row in rows)
    columns = [
        "eps_eval",
        "clean err",
        "PGD err",
        *(["falsified err"] if falsified else []),
        *[f"verified ({m})" for m in methods],
        "verified (best)",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row['eps_eval']:.4g}", _percent(row["clean_err"]), _percent(row.get("pgd_err"))]
        cells += [_percent(row.get("falsified_err"))] if falsified else []
        cells += [_percent(row["verified_err"][m]) for m in (*methods, "best")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_cascade(rows: list[dict], key: str = CASCADE) -> str:
    """Per eps and stage: examples it ran on, verified, falsified and unknown (complete stages),
    seconds (a complete stage's median and largest per example too), peak memory."""
    lines = [
        f"| eps_eval | stage ({key}) | ran on | verified | falsified | "
        "unknown | seconds | median / max s per example | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for stage in row[key]:
            per_example = f"{stage['median_s']:.2f} / {stage['max_s']:.2f}" if "median_s" in stage else "–"
            lines.append(
                f"| {row['eps_eval']:.4g} | {stage['stage']} | {stage['ran_on']} "
                f"| {stage['verified']} | {stage.get('falsified', '–')} | "
                f"{stage.get('unknown', '–')} | {stage['seconds']:.1f} "
                f"| {per_example} | {stage['peak_memory_mb']:.0f} |"
            )
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="verify")
def main(cfg: DictConfig) -> None:
    try:
        verify(cfg, Path(HydraConfig.get().runtime.output_dir))
    except CertlightError as error:
        sys.exit(f"certlight.verify: error: {error}")


if __name__ == "__main__":
    main()
