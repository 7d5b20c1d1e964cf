"""Attacks inside a box, for evaluation (PGD error) and for training methods alike."""

from certlight.attacks.pgd import attack_succeeds, pgd_margins

__all__ = ["attack_succeeds", "pgd_margins"]
