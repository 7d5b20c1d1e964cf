"""Bound propagation: pure torch functions of (layers, input box) -> bounds. No Lightning here."""

from certlight.bounds.box import input_box
from certlight.bounds.crown import backward_lower_bound, crown_ibp_margin_lower, crown_margin_lower
from certlight.bounds.ibp import ibp_margin_lower, interval_propagate
from certlight.bounds.layers import check_supported, clean_forward
from certlight.bounds.margins import BOUND_METHODS, margin_lower_bounds, mixed_margin_lower
from certlight.bounds.spec import is_verified, margin_spec, worst_case_logits

__all__ = [
    "BOUND_METHODS",
    "backward_lower_bound",
    "check_supported",
    "clean_forward",
    "crown_ibp_margin_lower",
    "crown_margin_lower",
    "ibp_margin_lower",
    "input_box",
    "interval_propagate",
    "is_verified",
    "margin_lower_bounds",
    "margin_spec",
    "mixed_margin_lower",
    "worst_case_logits",
]
