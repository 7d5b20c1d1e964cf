"""What a hyper-parameter search needs from a run: the objective it returns, and a sweep
folder that exists before the search opens its SQLite study there.

Hydra's Optuna sweeper opens the study before its launcher creates the sweep folder, so the
:class:`SweepFolder` Hydra callback creates it first; with the study in a fixed folder an
interrupted search continues where it stopped (``load_if_exists``).
"""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from certlight.errors import CertlightError

OBJECTIVES = ("verified_err", "clean_err")


def check_objective(name: str | None) -> None:
    if name is not None and name not in OBJECTIVES:
        raise CertlightError(
            f"optimized_metric={name!r} is unknown; allowed: {', '.join(OBJECTIVES)} (results.json keys)"
        )


def objective(results: dict, name: str | None) -> float:
    """The number ``train`` returns to a sweeper: ``optimized_metric`` of the run's results
    (the final evaluation's verified error by default)."""
    return float(results[name or "verified_err"])


class SweepFolder(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
