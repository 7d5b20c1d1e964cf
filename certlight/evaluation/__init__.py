"""Certification of trained networks: a whole test set with PGD cross-checks."""

from certlight.evaluation.certify import UnsoundBoundError, certify_dataset, hidden_neurons

__all__ = ["UnsoundBoundError", "certify_dataset", "hidden_neurons"]
