"""Checks of user-given values, each failing with one line that names the key, the value and
what is allowed. Plain Python (no Hydra), so library classes built from configs can use them."""

from __future__ import annotations

import math
from typing import Any

from certlight.errors import CertlightError


def number(
    value: Any, name: str, minimum: float | None = None, maximum: float | None = None, exclusive_minimum: bool = False
) -> float:
    """A finite real number (not a string, not a bool) inside the given bounds."""
    if isinstance(value, (bool, str)) or not hasattr(value, "__float__"):
        raise CertlightError(f"{name}={value!r} is not a number")
    result = float(value)
    if not math.isfinite(result):
        raise CertlightError(f"{name}={value!r} must be a finite number")
    if minimum is not None and (result < minimum or exclusive_minimum and result == minimum):
        relation = ">" if exclusive_minimum else ">="
        raise CertlightError(f"{name}={value!r} must be {relation} {minimum:g}")
    if maximum is not None and result > maximum:
        raise CertlightError(f"{name}={value!r} must be <= {maximum:g}")
    return result


def integer_at_least(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = (
            "a positive integer"
            if minimum == 1
            else "a non-negative integer"
            if minimum == 0
            else f"an integer >= {minimum}"
        )
        raise CertlightError(f"{name}={value!r} must be {kind}")
    return value


def optional_integer_at_least(value: Any, name: str, minimum: int) -> int | None:
    if value is None:
        return None
    integer_at_least(value, name, minimum)
    return value


def boolean(value: Any, name: str, allow_null: bool = False) -> bool | None:
    if value is None and allow_null:
        return None
    if not isinstance(value, bool):
        allowed = "true, false or null" if allow_null else "true or false"
        raise CertlightError(f"{name}={value!r} is not allowed; use {allowed}")
    return value


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
