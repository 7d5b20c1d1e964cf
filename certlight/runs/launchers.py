"""A Hydra callback that checks, before a multirun launches anything, that its launcher can run
on this machine: one line instead of a traceback from deep inside the submitting library."""

from __future__ import annotations

import shutil
import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class LauncherCheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        target = str(config.hydra.launcher.get("_target_", ""))
        if target.endswith(".SlurmLauncher"):
            missing = [command for command in ("sbatch", "srun") if shutil.which(command) is None]
            if missing:
                sys.exit(
                    f"certlight: error: hydra/launcher=slurm needs SLURM, but {' and '.join(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not on PATH here; "
                    "run it on a SLURM login node, or use hydra/launcher=submitit_local on this machine"
                )
