"""Turning Hydra config values into checked Python values, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig

from certlight.data import default_data_root
from certlight.errors import CertlightError


def parse_epsilon(value: Any, name: str) -> float:
    """A number or a fraction string such as ``8/255``, checked to lie in [0, 1] (pixel space)."""
    try:
        if isinstance(value, str) and "/" in value:
            numerator, denominator = value.split("/")
            eps = float(numerator) / float(denominator)
        else:
            eps = float(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise CertlightError(f"{name}={value!r} is not a number (use e.g. 0.3 or 8/255)") from None
    if not 0 <= eps <= 1:
        raise CertlightError(f"{name}={value} must lie in [0, 1]: epsilon is measured in pixel space")
    return eps


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
