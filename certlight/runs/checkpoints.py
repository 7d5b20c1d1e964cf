"""certlight's model files: training checkpoints and the small weights-only file every finished
run leaves beside its ``results.json``; reading them with clear errors, and what a resume may
change."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from certlight.errors import CertlightError
from certlight.runs.run_keys import COMPUTATION_KEYS, config_changes, flatten, is_under

# The checkpoint's weights and offsets belong to these: no override can change them.
FIXED_ON_RESUME = ("model", "dataset.name", "dataset.train_subset")


def load_checkpoint(path: str | Path, key: str) -> dict:
    """A checkpoint written by ``train.py``; ``key`` is the config key the user gave it under."""
    file = Path(path)
    if not file.is_file():
        raise CertlightError(f"{key}={path}: no such file")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise CertlightError(f"{key}={path} is not a checkpoint torch can read ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "certlight_config" not in checkpoint:
        raise CertlightError(
            f"{key}={path} is not a certlight training checkpoint (no state_dict and training config in it)"
        )
    return checkpoint


def epochs_completed(checkpoint: dict) -> int:
    """Epochs the checkpoint's run had finished. Older checkpoints lack certlight's counter:
    Lightning's ``epoch`` of an end-of-epoch save (the only kind train.py writes) plus one."""
    progress = checkpoint.get("certlight_progress") or {}
    return int(progress.get("epochs_completed", checkpoint.get("epoch", -1) + 1))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def resume_changes(saved: dict, current: dict, allowed: list[str], key: str = "ckpt_path") -> dict[str, list]:
    """The config differences a resume makes, as ``key: [old, new]``; raises for any that
    changes what is computed unless ``allowed`` names it (bound engine and accelerator
    changes compute the same function and are only recorded)."""
    known = set(flatten(saved)) | set(flatten(current))
    unknown = [k for k in allowed if not any(is_under(name, [k]) for name in known)]
    if unknown:
        raise CertlightError(
            f"allow_resume_changes: {', '.join(map(repr, unknown))} is no config key of "
            "this run or its checkpoint (e.g. allow_resume_changes=[trainer.max_epochs])"
        )
    changes = config_changes(saved, current)
    fixed = [k for k in changes if is_under(k, FIXED_ON_RESUME)]
    if fixed:
        listed = "; ".join(f"{k}: {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in fixed)
        raise CertlightError(
            f"{key}: the checkpoint belongs to another model or dataset ({listed}); start a new run instead"
        )
    refused = [k for k in changes if not is_under(k, COMPUTATION_KEYS) and not is_under(k, allowed)]
    if refused:
        listed = "; ".join(f"{k}: {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in refused)
        raise CertlightError(
            f"{key}: resuming would change what the run computes ({listed}); resume with the checkpoint's "
            "values, or allow it deliberately with "
            f"allow_resume_changes=[{','.join(refused)}] (recorded in results.json)"
        )
    return {k: list(v) for k, v in changes.items()}


WEIGHTS_FILE = "weights.pt"
WEIGHTS_FORMAT = "certlight-weights-1"


def write_weights(path: Path, net_state: dict, config: dict) -> None:
    """The network's weights with what they belong to (model config, dataset), as plain tensors
    and strings: ``torch.load(path, weights_only=True)`` reads it, and it outlives the code's
    classes. ``config``: the run's training config."""
    torch.save(
        {
            "format": WEIGHTS_FORMAT,
            "state_dict": {k: v.detach().cpu() for k, v in net_state.items()},
            "model": config["model"],
            "dataset": config["dataset"]["name"],
        },
        path,
    )


@dataclass(frozen=True)
class TrainedModel:
    """What ``verify`` needs of a trained network: its weights, the run's training config, and
    how far the run got."""

    source: str
    net_state: dict
    config: dict
    epochs_completed: int
    max_epochs: int


def load_trained(path: str | Path, key: str = "ckpt") -> TrainedModel:
    """A training checkpoint (``.ckpt``), a run folder (its ``weights.pt``, else its
    ``checkpoints/last.ckpt``), or a ``weights.pt`` whose run's ``results.json`` lies beside it."""
    path = Path(path)
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file():
            path = path / WEIGHTS_FILE
        elif (path / "checkpoints" / "last.ckpt").is_file():
            path = path / "checkpoints" / "last.ckpt"
        else:
            raise CertlightError(
                f"{key}={path}: a run folder must hold {WEIGHTS_FILE} (and results.json) or checkpoints/last.ckpt"
            )
    if not path.is_file():
        raise CertlightError(f"{key}={path}: no such file")
    if path.suffix != ".ckpt":
        return _load_weights(path, key)
    checkpoint = load_checkpoint(path, key)
    config = checkpoint["certlight_config"]
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    return TrainedModel(str(path), state, config, epochs_completed(checkpoint), int(config["trainer"]["max_epochs"]))


def _load_weights(path: Path, key: str) -> TrainedModel:
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a weights file
        raise CertlightError(
            f"{key}={path} is neither a checkpoint nor a certlight weights file ({type(error).__name__})"
        ) from None
    if not isinstance(weights, dict) or weights.get("format") != WEIGHTS_FORMAT:
        raise CertlightError(f"{key}={path} is not a certlight weights file (no format {WEIGHTS_FORMAT!r})")
    results_file = path.parent / "results.json"
    if not results_file.is_file():
        raise CertlightError(f"{key}={path}: its run's results.json (the training config) is not beside it")
    results = json.loads(results_file.read_text())
    config = results["config"]
    mismatch = [
        f"{name}: weights {mine!r}, results.json {theirs!r}"
        for name, mine, theirs in (
            ("model", weights["model"], config["model"]),
            ("dataset", weights["dataset"], config["dataset"]["name"]),
        )
        if mine != theirs
    ]
    if mismatch:
        raise CertlightError(
            f"{key}={path} belongs to another model or dataset than {results_file} ({'; '.join(mismatch)})"
        )
    return TrainedModel(
        str(path),
        weights["state_dict"],
        config,
        int(results.get("epochs", 0)),
        int(results.get("max_epochs", config["trainer"]["max_epochs"])),
    )
