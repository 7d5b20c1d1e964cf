"""The margin specification: true-class logit minus every other logit, and the logits it implies."""

from __future__ import annotations

import torch


def other_classes_mask(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Boolean (B, K) mask, True everywhere except at each row's true class."""
    classes = torch.arange(num_classes, device=y.device)
    return classes.unsqueeze(0) != y.unsqueeze(1)


def margin_spec(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Specification matrix C of shape (B, K-1, K): row j is ``e_y - e_j`` for each j != y.

    A lower bound of ``C @ logits`` greater than 0 in every row proves the prediction cannot
    change inside the box. Other classes keep their natural order, so row j of a bound maps
    back to class ``others[j]`` with :func:`worst_case_logits`.
    """
    eye = torch.eye(num_classes, dtype=dtype, device=y.device)
    others = eye.unsqueeze(0).expand(y.shape[0], -1, -1)[other_classes_mask(y, num_classes)]
    others = others.view(y.shape[0], num_classes - 1, num_classes)
    return eye[y].unsqueeze(1) - others


def worst_case_logits(margin_lower: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 2 in margin form: 0 at the true class, ``-lower(z_y - z_j)`` at every other class j.

    Softmax and cross-entropy are shift-invariant, so these logits give exactly the loss and
    margin of the paper's ``z_hat`` built from ``lower(z_y)`` and ``upper(z_j)``, but with the
    tighter bounds of the elided specification.
    """
    batch, num_others = margin_lower.shape
    mask = other_classes_mask(y, num_others + 1)
    logits = margin_lower.new_zeros(batch, num_others + 1)
    return logits.masked_scatter(mask, -margin_lower)


def is_verified(margin_lower: torch.Tensor) -> torch.Tensor:
    """(B,) bool: every margin lower bound is strictly positive."""
    return (margin_lower > 0).all(dim=1)
