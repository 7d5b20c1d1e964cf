"""Shi et al. 2021, "Fast certified robust training with short warmup": the IBP initialisation
and the warm-up regularisers, as options any IBP-family method switches on.

Why: with standard initialisation IBP bounds grow exponentially with depth and most ReLUs end
up inactive during the eps ramp; these two fixes let a 20-epoch ramp replace a 100-epoch one.
Written from the paper (sections 3.2-3.3, eqs. 4-7) and checked against the released code
(github.com/shizhouxing/Fast-Certified-Robust-Training: manual_init.py ``ibp_init``,
regularization.py ``compute_reg``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from certlight.models.residual import Residual
from certlight.validate import number

WEIGHTED = (nn.Linear, nn.Conv2d)


def ibp_init_std(weight: torch.Tensor) -> float:
    """The paper's eq. 4 choice ``sqrt(2*pi) / fan_in``: with it the expected IBP width of a
    layer's output equals that of its input (E|w| * fan_in = 1 after the ReLU halves it)."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    return math.sqrt(2 * math.pi) / fan_in


def ibp_initialise(net: nn.Module) -> None:
    """Redraw every Linear / Conv2d weight but the last layer's from N(0, ibp_init_std); biases
    keep their init. A layer whose input is one layer (a ReLU, a BatchNorm, ...) after a residual
    sum gets half its weight (the sum of two paths doubles the width), as the released
    ``ibp_init`` does: it halves a layer whose input node's input is an Add."""
    layers = [m for m in net.modules() if isinstance(m, WEIGHTED)]
    last = layers[-1] if layers else None
    SUM, ONE_AFTER_SUM = "sum", "one layer after a sum"

    def walk(module: nn.Module, source: str | None) -> str | None:
        """Redraw in forward order; ``source`` says what produced the module's input, and the
        return value what its output is."""
        if isinstance(module, WEIGHTED):
            with torch.no_grad():
                if module is not last:
                    nn.init.normal_(module.weight, 0.0, ibp_init_std(module.weight))
                if source == ONE_AFTER_SUM:
                    module.weight /= 2
            return None
        if isinstance(module, Residual):
            walk(module.body, source)
            if module.shortcut is not None:
                walk(module.shortcut, source)
            return SUM
        if isinstance(module, nn.Sequential):
            for child in module:
                source = walk(child, source)
            return source
        return ONE_AFTER_SUM if source == SUM else None

    walk(net, None)


class BoundRegulariser:
    """Shi et al.'s warm-up regularisers on the IBP interval of every ReLU input:

    - tightness (eq. 5): ``ReLU(tau - w_0 / w_i) / tau``, with ``w_0`` the mean half-width of
      the input box and ``w_i`` that of layer i's pre-activation box: bounds may not grow more
      than 1/tau times the input's;
    - ReLU balance (eq. 6-7): the ratios of the active to the inactive neurons' mean centre and
      centred second moment, each folded into (0, 1] by ``min(r, 1/r)``, penalised below tau.
      A layer without inactive neurons adds no balance term (the released ``compute_reg``'s
      ratio is then ``x / -0.0 = -inf``, which its ``isinf`` guard drops), nor does one whose
      ratios are 0/0.

    Both averaged over the ReLU layers, summed, and weighted by ``weight * (1 - eps_t/eps_max)``:
    full strength at eps 0, zero once the ramp has reached eps_max.
    """

    def __init__(self, weight: float = 0.5, tolerance: float = 0.5):
        self.weight = number(weight, "method.regulariser.weight", minimum=0)
        self.tolerance = number(tolerance, "method.regulariser.tolerance", minimum=0, exclusive_minimum=True)

    def __call__(self, input_lower, input_upper, relu_inputs, eps: float, eps_max: float) -> torch.Tensor:
        strength = self.weight * (1 - eps / eps_max) if eps_max > 0 else 0.0
        if strength <= 0 or not relu_inputs:
            return input_lower.new_zeros(())
        return strength * self.value(input_lower, input_upper, relu_inputs)

    def value(self, input_lower, input_upper, relu_inputs) -> torch.Tensor:
        """The unweighted ``L_tightness + L_relu``."""
        tau = self.tolerance
        input_width = ((input_upper - input_lower) / 2).mean()
        tightness = relu = input_lower.new_zeros(())
        for lower, upper in relu_inputs:
            centre, width = (upper + lower) / 2, ((upper - lower) / 2).mean()
            tightness = tightness + F.relu(tau - input_width / width.clamp(min=1e-12)) / tau
            active, inactive = (lower > 0).to(centre.dtype), (upper < 0).to(centre.dtype)
            spread = (centre - centre.mean()) ** 2
            active_mean, inactive_mean = (centre * active).mean(), -(centre * inactive).mean()
            active_spread, inactive_spread = (spread * active).sum(), (spread * inactive).sum()
            layer = (
                F.relu(tau - folded_ratio(active_mean, inactive_mean))
                + F.relu(tau - folded_ratio(active_spread, inactive_spread))
            ) / tau
            # Decided on the device (no host sync).
            counted = (inactive_mean > 0) & ((active_spread > 0) | (inactive_spread > 0))
            relu = relu + torch.where(counted, layer, torch.zeros_like(layer))
        return (tightness + relu) / len(relu_inputs)


def folded_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``min(r, 1/r)`` of ``r = numerator / denominator`` (both >= 0), 0 when either is 0. No
    inf or NaN is formed, so no NaN gradient either."""
    both = (numerator > 0) & (denominator > 0)
    ratio = torch.where(both, numerator, 1.0) / torch.where(both, denominator, 1.0)
    return torch.where(both, torch.minimum(ratio, 1 / ratio), 0.0)


def l1_penalty(net: nn.Module) -> torch.Tensor:
    """Sum of |w| over every Linear / Conv2d weight (the L1 term MTL-IBP's and SABR's recipes add)."""
    return sum(m.weight.abs().sum() for m in net.modules() if isinstance(m, WEIGHTED))
