"""MTL-IBP and CC-IBP (De Palma et al., ICLR 2024, "Expressive losses for verified robustness
via convex combinations"): the robust loss mixes IBP's worst case over the eps box with an
adversarial point found by PGD in the same box, by one coefficient alpha.

Why: alpha spans the range from adversarial training (0) to IBP (1), so one number trades
accuracy against verifiability. Defaults are the released MNIST eps-0.3 recipe
(github.com/alessandrodepalma/expressive-losses, README "MNIST - 0.3": --mtlibp_coeff 8e-2,
--train_att_n_steps 1, --train_att_step_size 10.0; attack.py ``pgd_attack``).

The tactics: the margin is the IBP margin over the eps box (what is certified), so
re-weighting favours examples whose certified margin is near 0 and auto-eps shrinks the box
both the attack and IBP use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from certlight.attacks.pgd import pgd_point_eval_mode
from certlight.bounds import margin_spec, worst_case_logits
from certlight.methods.certified import CertifiedModule, RobustTerm
from certlight.validate import integer_at_least, number


class AdversarialPointMethod(CertifiedModule):
    """The adversarial point in the method's box; the attack runs in eval mode (BatchNorm uses
    running statistics, as in the released code), the point is then evaluated in train mode."""

    def __init__(self, *args, alpha: float = 0.08, attack_steps: int = 1, attack_step_size: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha = number(alpha, "method.alpha", minimum=0, maximum=1)
        self.attack_steps = integer_at_least(attack_steps, "method.attack_steps", 1)
        self.attack_step_size = number(attack_step_size, "method.attack_step_size", minimum=0, exclusive_minimum=True)

    def adversarial_logits(self, x, y, region, eps: float) -> torch.Tensor:
        if eps == 0:  # warm-up: the box is the point itself
            return self.net(x)
        return self.net(pgd_point_eval_mode(self.net, y, *region, self.attack_steps, self.attack_step_size))


class MTLIBPModule(AdversarialPointMethod):
    """``alpha * CE(IBP worst case) + (1 - alpha) * CE(adversarial point)`` per example."""

    def robust_term(self, x, y, region, state, values):
        ibp = self.bound_term(x, y, region, 0.0, state)
        adversarial = F.cross_entropy(self.adversarial_logits(x, y, region, values.eps), y, reduction="none")
        return RobustTerm(self.alpha * ibp.loss + (1 - self.alpha) * adversarial, ibp.margin_lower, ibp.relu_inputs)


class CCIBPModule(AdversarialPointMethod):
    """CE of the convex combination of the margins: ``alpha * IBP lower bound + (1 - alpha) *
    margins at the adversarial point`` (the released code's ``ccibp_diff``)."""

    def robust_term(self, x, y, region, state, values):
        ibp = self.bound_term(x, y, region, 0.0, state)
        logits = self.adversarial_logits(x, y, region, values.eps)
        adversarial_margins = (margin_spec(y, logits.shape[1], logits.dtype) @ logits.unsqueeze(-1)).squeeze(-1)
        mixed = self.alpha * ibp.margin_lower + (1 - self.alpha) * adversarial_margins
        loss = F.cross_entropy(worst_case_logits(mixed, y), y, reduction="none")
        return RobustTerm(loss, ibp.margin_lower, ibp.relu_inputs)
