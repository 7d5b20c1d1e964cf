"""Turning Hydra config values into checked Python values, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

from certlight.data import default_data_root
from certlight.errors import CertlightError

# The config groups ship inside the package (certlight/conf; the repository's conf/ links to
# it), so a wheel's console scripts find them as an editable install's do.
CONF_DIR = str(Path(__file__).resolve().parent / "conf")


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets our own errors through unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, CertlightError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def data_root(cfg: DictConfig) -> str:
    """``data.root`` made absolute against the directory the user launched from; when it is
    null, :func:`certlight.data.default_data_root` of that directory."""
    if cfg.data.get("root") is None:
        return default_data_root(to_absolute_path("."))
    return str(Path(to_absolute_path(str(cfg.data.root))))
