"""Certify a trained network on a test set: clean, verified (per method and best-of) and PGD error.

The PGD error is a lower bound of the true robust error and every verified error an upper
bound, so an example both verified and broken by PGD means an unsound bound: that stops the
evaluation instead of producing a wrong table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from certlight.bounds import input_box, is_verified, relu_count
from certlight.evaluation.attack import attack_succeeds, pgd_margins


class UnsoundBoundError(RuntimeError):
    """A bound claimed robustness that an attack refuted: a bug in a bound engine."""


@dataclass
class Tally:
    eps: float
    methods: tuple[str, ...]
    count: int = 0
    clean_wrong: int = 0
    attacked: int = 0
    unverified: dict[str, int] = field(default_factory=dict)

    def as_errors(self) -> dict:
        n = max(self.count, 1)
        return {
            "eps_eval": self.eps,
            "n": self.count,
            "clean_err": self.clean_wrong / n,
            "pgd_err": self.attacked / n,
            "verified_err": {m: self.unverified[m] / n for m in (*self.methods, "best")},
        }


def hidden_neurons(net: nn.Module, example: torch.Tensor) -> int:
    """ReLU count of a network on one input: what full CROWN's cost grows with."""
    return relu_count(net, example.shape[1:])


@torch.no_grad()
def _margins(bounder, x, lower, upper, y, methods):
    return {m: bounder.margins(x, lower, upper, y, m) for m in methods}


def certify_dataset(
    net: nn.Module,
    bounder,
    batches: Iterable,
    mean: Sequence[float],
    std: Sequence[float],
    eps_values: Sequence[float],
    methods: Sequence[str],
    pgd_steps: int = 40,
    pgd_restarts: int = 1,
) -> list[dict]:
    """One dict of error rates per epsilon, over every batch ``(x, y, ...)``."""
    net.eval()
    tallies = [Tally(eps, tuple(methods), unverified={m: 0 for m in (*methods, "best")}) for eps in eps_values]
    for batch in batches:
        x, y = batch[0], batch[1]
        with torch.no_grad():
            correct = net(x).argmax(1) == y
        for tally in tallies:
            lower, upper = input_box(x, tally.eps, mean, std)
            verified = {m: is_verified(b) for m, b in _margins(bounder, x, lower, upper, y, methods).items()}
            best = torch.stack(list(verified.values())).any(0) if verified else torch.zeros_like(correct)
            broken = attack_succeeds(pgd_margins(net, x, y, tally.eps, mean, std, pgd_steps, pgd_restarts)) | ~correct
            for method, flags in verified.items():
                if (flags & broken).any():
                    raise UnsoundBoundError(f"{method} verified {int((flags & broken).sum())} example(s) at eps={tally.eps} that PGD breaks")
                tally.unverified[method] += int((~flags).sum())
            tally.unverified["best"] += int((~best).sum())
            tally.count += y.numel()
            tally.clean_wrong += int((~correct).sum())
            tally.attacked += int(broken.sum())
    return [t.as_errors() for t in tallies]
