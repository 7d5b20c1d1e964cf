"""Attacks and certification of trained networks."""

from certlight.evaluation.attack import attack_succeeds, pgd_margins

__all__ = ["attack_succeeds", "pgd_margins"]
