"""SABR (Müller et al., ICLR 2023, "Certified training: small boxes are all you need"): IBP on a
small box of radius ``lambda_ratio * eps`` around a PGD point, placed so it stays inside the
eps box.

Why: a small box's IBP bound is far less loose than the whole box's, while centring it on an
adversarial point keeps the loss sensitive to the worst region. Defaults are the released
MNIST eps-0.3 recipe (github.com/eth-sri/SABR, README "MNIST 0.3": --lambda_ratio 0.6;
src/parse_args.py: --adv_start_steps 8, --adv_step_size 0.5; src/adv_attack.py: step size
times the box half-width, divided by 10 at 50 %, 80 % and 90 % of the steps).

The tactics: the margin is the IBP margin over the small box (the region SABR trains on), so
re-weighting weighs each example's SABR loss by how close its small-box bound is to 0; auto-eps
shrinks the example's eps, and with it both the search box and the small box (radius lambda*eps).
"""

from __future__ import annotations

import torch

from certlight.attacks.pgd import pgd_point_eval_mode
from certlight.methods.certified import IBPModule
from certlight.validate import integer_at_least, number

DECAY_AT = (0.5, 0.8, 0.9)


class SABRModule(IBPModule):
    def __init__(
        self, *args, lambda_ratio: float = 0.6, attack_steps: int = 8, attack_step_size: float = 0.5, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.lambda_ratio = number(lambda_ratio, "method.lambda_ratio", minimum=0, maximum=1, exclusive_minimum=True)
        self.attack_steps = integer_at_least(attack_steps, "method.attack_steps", 1)
        self.attack_step_size = number(attack_step_size, "method.attack_step_size", minimum=0, exclusive_minimum=True)

    def region(self, x, y, eps):
        """The small box: radius ``lambda_ratio * eps`` (pixel space) around the PGD point moved
        just far enough inside the eps box; where the (domain-clipped) eps box is narrower than
        the small box, the small box is that whole side of the eps box. Always inside it."""
        lower, upper = super().region(x, y, eps)
        trailing = (1,) * (x.dim() - 2)
        radius = self.lambda_ratio * eps.view(-1, 1, *trailing) / self.input_std.view(1, -1, *trailing)
        point = pgd_point_eval_mode(self.net, y, lower, upper, self.attack_steps, self.attack_step_size, DECAY_AT)
        low_centre, high_centre = lower + radius, upper - radius
        centre = torch.where(
            low_centre <= high_centre, torch.minimum(torch.maximum(point, low_centre), high_centre), (lower + upper) / 2
        )
        return torch.maximum(centre - radius, lower), torch.minimum(centre + radius, upper)
