"""certlight training checkpoints: reading them with clear errors, and what a resume may change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from certlight.errors import CertlightError
from certlight.run_keys import COMPUTATION_KEYS, config_changes, is_under

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
        raise CertlightError(f"{key}={path} is not a certlight training checkpoint (no state_dict and training config in it)")
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
    changes = config_changes(saved, current)
    fixed = [k for k in changes if is_under(k, FIXED_ON_RESUME)]
    if fixed:
        listed = "; ".join(f"{k}: {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in fixed)
        raise CertlightError(f"{key}: the checkpoint belongs to another model or dataset ({listed}); start a new run instead")
    refused = [k for k in changes if not is_under(k, COMPUTATION_KEYS) and not is_under(k, allowed)]
    if refused:
        listed = "; ".join(f"{k}: {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in refused)
        raise CertlightError(
            f"{key}: resuming would change what the run computes ({listed}); resume with the checkpoint's "
            f"values, or allow it deliberately with allow_resume_changes=[{','.join(refused)}] (recorded in results.json)"
        )
    return {k: list(v) for k, v in changes.items()}
