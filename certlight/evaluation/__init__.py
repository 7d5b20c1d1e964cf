"""Attacks and certification of trained networks."""

from certlight.evaluation.attack import attack_succeeds, pgd_margins
from certlight.evaluation.certify import UnsoundBoundError, certify_dataset, hidden_neurons

__all__ = ["UnsoundBoundError", "attack_succeeds", "certify_dataset", "hidden_neurons", "pgd_margins"]
