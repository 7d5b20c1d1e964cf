"""Per-example auto-tuned epsilon (Algorithm 1 of the paper).

A buffer of the module, so it is saved in every checkpoint, moved with the model, and equal
on every DDP rank as long as every rank applies the same (gathered) updates.
"""

from __future__ import annotations

import torch
from torch import nn

from certlight.errors import CertlightError
from certlight.validate import number


class AutoEpsilon(nn.Module):
    """Offsets, one per training example, subtracted from the scheduled base epsilon.

    ``eps_i = max(0, eps_base - offset_i)``; after the step ``offset_i = -margin_i * eps_maxoff``
    if ``margin_i < 0`` else 0. Examples never seen keep offset 0.
    """

    def __init__(self, num_examples: int, eps_maxoff: float, eps_train: float):
        super().__init__()
        eps_maxoff = number(eps_maxoff, "auto_eps.eps_maxoff")
        if not 0 <= eps_maxoff <= eps_train:
            raise CertlightError(
                f"auto_eps.eps_maxoff={eps_maxoff} must lie in [0, eps.train={eps_train}] (0 turns auto-tuning off)"
            )
        self.eps_maxoff = float(eps_maxoff)
        self.register_buffer("offsets", torch.zeros(num_examples))

    def epsilon(self, index: torch.Tensor, eps_base: float) -> torch.Tensor:
        """Per-example epsilon (B,) for the examples ``index``."""
        return (eps_base - self.offsets[index]).clamp(min=0)

    @torch.no_grad()
    def update(self, index: torch.Tensor, margin: torch.Tensor) -> None:
        """Apply Algorithm 1's update for the examples just seen (all ranks' examples under DDP)."""
        new = torch.where(margin < 0, -margin * self.eps_maxoff, torch.zeros_like(margin))
        self.offsets.index_put_((index.long(),), new.to(self.offsets.dtype))


def auto_epsilon(num_examples: int, eps_maxoff: float, eps_train: float) -> AutoEpsilon | None:
    """The auto-eps table, or None when ``eps_maxoff`` is 0 (off: no table is built)."""
    table = AutoEpsilon(num_examples, eps_maxoff, eps_train)  # checks the value first
    return table if table.eps_maxoff > 0 else None
