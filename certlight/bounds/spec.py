"""The margin specification: true-class logit minus every other logit, and the logits it implies.

Everything here is index arithmetic on (B, K-1) tensors, never boolean-mask selection: mask
selection has a data-dependent size, which on a GPU makes the host wait for the device.
"""

from __future__ import annotations

import torch


def other_classes_mask(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Boolean (B, K) mask, True everywhere except at each row's true class."""
    classes = torch.arange(num_classes, device=y.device)
    return classes.unsqueeze(0) != y.unsqueeze(1)


def other_classes(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, K-1) the classes other than ``y``, in natural order: column j is j if j < y else j+1."""
    columns = torch.arange(num_classes - 1, device=y.device).unsqueeze(0)
    return columns + (columns >= y.unsqueeze(1)).long()


def margin_spec(y: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Specification matrix C of shape (B, K-1, K): row j is ``e_y - e_j`` for each j != y.

    A lower bound of ``C @ logits`` greater than 0 in every row proves the prediction cannot
    change inside the box. Other classes keep their natural order, so row j of a bound maps
    back to class ``others[j]`` with :func:`worst_case_logits`.
    """
    eye = torch.eye(num_classes, dtype=dtype, device=y.device)
    return eye[y].unsqueeze(1) - eye[other_classes(y, num_classes)]


def worst_case_logits(margin_lower: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 2 in margin form: 0 at the true class, ``-lower(z_y - z_j)`` at every other class j.

    Softmax and cross-entropy are shift-invariant, so these logits give exactly the loss and
    margin of the paper's ``z_hat`` built from ``lower(z_y)`` and ``upper(z_j)``, but with the
    tighter bounds of the elided specification.
    """
    batch, num_others = margin_lower.shape
    logits = margin_lower.new_zeros(batch, num_others + 1)
    return logits.scatter(1, other_classes(y, num_others + 1), -margin_lower)


def is_verified(margin_lower: torch.Tensor) -> torch.Tensor:
    """(B,) bool: every margin lower bound is strictly positive."""
    return (margin_lower > 0).all(dim=1)
