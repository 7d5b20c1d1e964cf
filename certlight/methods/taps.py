"""TAPS and STAPS (Mao et al., NeurIPS 2023, "TAPS: Connecting certified and adversarial
training"): IBP through the network's first layers (the feature extractor), then an attack over
the resulting latent box through the rest (the classifier).

Why: IBP's looseness compounds layer by layer; bounding only the extractor with IBP and
estimating the classifier's worst case by attack gives a tighter, if not sound, estimate of the
worst-case loss, and the gradient connector lets that estimate train the extractor's box.
Written from the paper and CTBench's released implementation (github.com/eth-sri/CTBench,
model_wrapper.py ``TAPSModelWrapper``, ``_MultiPGDMixin``, ``_RectifiedLinearGradientLink``,
``_GradExpander``); recipe values in conf/method/taps.yaml and staps.yaml.

While eps ramps up the loss is plain IBP's over the region (``ibp_while_ramping``, the released
default: TAPS starts when the ramp ends). Then, per example: ``CE(TAPS estimate)`` with its
gradient scaled by ``grad_scale``, times ``CE(IBP bound)`` of the whole network. The released
code multiplies the two batch means; here each example's two terms are multiplied, so that
re-weighting (eq. 7) can weigh each example's term (the same for a batch of one).

The tactics: TAPS' estimate is not a bound, so the margin they read is the IBP lower bound of
the whole network over the region (the second factor of the loss, computed anyway): sound, as
the tactics need. STAPS trains on SABR's small box, and auto-eps shrinks that box's eps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from certlight.attacks.pgd import pgd_margin_points
from certlight.bounds import Span, margin_spec, worst_case_logits
from certlight.bounds.backends import NativeBounds
from certlight.bounds.engine import fixed_statistics_forward, ibp_margin_lower, interval_propagate, relu_keys
from certlight.errors import CertlightError
from certlight.methods.certified import IBPModule, RobustTerm
from certlight.methods.sabr import SABRModule
from certlight.validate import boolean, integer_at_least, number


class RectifiedLinearLink(torch.autograd.Function):
    """TAPS' gradient connector: the attacked latent points pass unchanged, and their gradient
    goes to the latent box's bounds. A point within ``c`` box widths of the upper bound passes
    its gradient to the upper bound, linearly more the closer it is (all of it at the bound);
    likewise for the lower bound; the points themselves get none. ``points`` is (B, M, *shape),
    the bounds (B, *shape); ``tolerance`` keeps zero-width boxes finite."""

    @staticmethod
    def forward(ctx, lower, upper, points, c: float, tolerance: float):
        ctx.save_for_backward(lower, upper, points)
        ctx.c, ctx.tolerance = c, tolerance
        return points.view_as(points)

    @staticmethod
    def backward(ctx, grad_points):
        lower, upper, points = ctx.saved_tensors
        low, high = lower.unsqueeze(1), upper.unsqueeze(1)
        band = ctx.c * (high - low)
        slack = band.clamp(min=ctx.tolerance)
        upper_threshold, lower_threshold = high - band, low + band
        upper_share = (points >= upper_threshold) * (points - upper_threshold).clamp(min=0.5 * ctx.tolerance) / slack
        lower_share = (points <= lower_threshold) * (lower_threshold - points).clamp(min=0.5 * ctx.tolerance) / slack
        return (grad_points * lower_share).sum(1), (grad_points * upper_share).sum(1), None, None, None


def scale_gradient(value: torch.Tensor, scale: float) -> torch.Tensor:
    """``value`` itself, whose gradient is ``scale`` times larger (TAPS' ``_GradExpander``)."""
    return value + (scale - 1) * (value - value.detach())


class TAPSModule(IBPModule):
    def __init__(
        self,
        *args,
        split: int = 2,
        latent_steps: int = 5,
        latent_restarts: int = 3,
        soft_threshold: float = 0.5,
        grad_scale: float = 4.0,
        ibp_while_ramping: bool = True,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if not isinstance(self.bounder, NativeBounds):
            raise CertlightError(
                f"method={type(self).__name__} bounds the feature extractor and the classifier apart, which "
                "only the native engine does; use bounds.backend=native"
            )
        layers = len(self.net)
        if isinstance(split, bool) or not isinstance(split, int) or not 1 <= split <= layers - 1:
            raise CertlightError(
                f"method.split={split!r} must be an integer in [1, {layers - 1}]: how many of the network's "
                f"{layers} top-level layers IBP bounds, the rest (at least the last) being attacked"
            )
        self.split = split
        self.latent_steps = integer_at_least(latent_steps, "method.latent_steps", 1)
        self.latent_restarts = integer_at_least(latent_restarts, "method.latent_restarts", 1)
        self.soft_threshold = number(
            soft_threshold, "method.soft_threshold", minimum=0, maximum=1, exclusive_minimum=True
        )
        self.grad_scale = number(grad_scale, "method.grad_scale", minimum=0, exclusive_minimum=True)
        self.ibp_while_ramping = boolean(ibp_while_ramping, "method.ibp_while_ramping")
        self.extractor, self.classifier = Span(self.net, 0, self.split), Span(self.net, self.split)

    def robust_term(self, x, y, region, state, values):
        if self.ibp_while_ramping and values.eps < self.schedule.eps_train:
            return self.bound_term(x, y, region, 0.0, state)  # as released: IBP until eps is ramped up
        latent_lower, latent_upper, extractor_walk = interval_propagate(self.extractor, *region, state)
        spec = margin_spec(y, self.net[-1].out_features, x.dtype)
        ibp_margins, classifier_walk = ibp_margin_lower(self.classifier, latent_lower, latent_upper, spec, state)
        estimate = self.latent_estimate(latent_lower, latent_upper, spec, state)
        taps_loss = F.cross_entropy(worst_case_logits(estimate, y), y, reduction="none")
        ibp_loss = F.cross_entropy(worst_case_logits(ibp_margins, y), y, reduction="none")
        relu_inputs = None
        if self.regulariser is not None:
            walked = {**extractor_walk.pre_activation, **classifier_walk.pre_activation}
            relu_inputs = [walked[key] for key in relu_keys(self.net, x.shape[1:])]
        return RobustTerm(scale_gradient(taps_loss, self.grad_scale) * ibp_loss, ibp_margins, relu_inputs)

    def latent_estimate(self, latent_lower, latent_upper, spec, state) -> torch.Tensor:
        """TAPS' estimate of the margin lower bounds (B, K-1): each margin at its own attacked
        point of the latent box, connected to the box's bounds for the gradient."""

        def classify(points):
            return fixed_statistics_forward(self.classifier, points, state)

        with torch.no_grad():
            points = pgd_margin_points(
                classify, spec, latent_lower.detach(), latent_upper.detach(), self.latent_steps, self.latent_restarts
            )
        points = RectifiedLinearLink.apply(latent_lower, latent_upper, points, self.soft_threshold, 1e-5)
        batch, rows = spec.shape[:2]
        logits = classify(points.flatten(0, 1)).view(batch, rows, -1)
        return (spec * logits).sum(-1)


class STAPSModule(TAPSModule, SABRModule):
    """STAPS: TAPS on SABR's small box around an attacked input (the two combined as released)."""
