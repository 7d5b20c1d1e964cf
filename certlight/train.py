"""Certified training from the command line: ``certlight-train`` or ``python train.py``,
e.g. ``certlight-train method=crown_ibp dataset=cifar10 reweight.gamma=5``."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from certlight.config import CONF_DIR
from certlight.errors import CertlightError
from certlight.runs.pipeline import RunInterrupted, train
from certlight.runs.sweeps import check_objective, objective


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    """Train; return ``optimized_metric`` of the results (what a sweeper minimises)."""
    searching = cfg.get("optimized_metric") is not None
    try:
        check_objective(cfg.get("optimized_metric"))
        results = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except RunInterrupted as stop:
        sys.exit(f"certlight: error: {stop}")  # Ctrl-C ends a search too
    except CertlightError as error:
        if searching:
            raise  # one trial's bad values: Hydra records the trial as failed, the search goes on
        sys.exit(f"certlight: error: {error}")
    return objective(results, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
