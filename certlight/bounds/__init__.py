"""Bound propagation: pure torch functions of (layers, input box) -> bounds. No Lightning here.

``rules`` says what each layer type does; ``engine`` walks a network with them (IBP, CROWN,
CROWN-IBP); ``margins`` picks a walk by method name; ``box`` builds the input region.
"""

from certlight.bounds.box import input_box
from certlight.bounds.engine import (
    backward_lower_bound,
    check_supported,
    clean_forward,
    crown_ibp_margin_lower,
    crown_margin_lower,
    ibp_margin_lower,
    interval_propagate,
    relu_count,
)
from certlight.bounds.linear import linear_lower
from certlight.bounds.margins import BOUND_METHODS, margin_lower_bounds, mixed_margin_lower
from certlight.bounds.rules import RULES, Rule, Span, WalkState, rule, rule_for_type
from certlight.bounds.spec import is_verified, margin_spec, worst_case_logits

__all__ = [
    "BOUND_METHODS",
    "RULES",
    "Rule",
    "Span",
    "WalkState",
    "backward_lower_bound",
    "check_supported",
    "clean_forward",
    "crown_ibp_margin_lower",
    "crown_margin_lower",
    "ibp_margin_lower",
    "input_box",
    "interval_propagate",
    "is_verified",
    "linear_lower",
    "margin_lower_bounds",
    "margin_spec",
    "mixed_margin_lower",
    "relu_count",
    "rule",
    "rule_for_type",
    "worst_case_logits",
]
