"""Certify a trained network on a test set: clean, verified (per method and best-of) and PGD error.

The PGD error is a lower bound of the true robust error and every verified error an upper
bound, so an example both verified and broken by PGD means an unsound bound: that stops the
evaluation instead of producing a wrong table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from certlight.attacks import attack_succeeds, pgd_margins
from certlight.bounds import input_box, is_verified, relu_count
from certlight.metrics import CertificationErrors


class UnsoundBoundError(RuntimeError):
    """A bound claimed robustness that an attack refuted: a bug in a bound engine."""


def hidden_neurons(net: nn.Module, example: torch.Tensor) -> int:
    """ReLU count of a network on one input: what full CROWN's cost grows with."""
    return relu_count(net, example.shape[1:])


@torch.no_grad()
def _margins(bounder, x, lower, upper, y, methods):
    return {m: bounder.margins(x, lower, upper, y, m) for m in methods}


@dataclass(frozen=True)
class AttackedBatch:
    """One batch at one radius: its box, which examples are correct, and which PGD broke
    (misclassified ones count as broken)."""

    eps_index: int
    x: torch.Tensor
    y: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    correct: torch.Tensor
    broken: torch.Tensor


def attacked_batches(
    net: nn.Module,
    batches: Iterable,
    mean,
    std,
    eps_values: Sequence[float],
    pgd_steps: int,
    pgd_restarts: int,
    generator: torch.Generator | None = None,
) -> Iterator[AttackedBatch]:
    """Every batch at every radius, attacked by PGD inside the same box the bounds certify;
    ``generator`` draws the attack's random starts (a seeded one makes the PGD error repeatable)."""
    net.eval()
    for batch in batches:
        x, y = batch[0], batch[1]
        with torch.no_grad():
            correct = net(x).argmax(1) == y
        for index, eps in enumerate(eps_values):
            lower, upper = input_box(x, eps, mean, std)
            broken = (
                attack_succeeds(pgd_margins(net, x, y, lower, upper, pgd_steps, pgd_restarts, generator=generator))
                | ~correct
            )
            yield AttackedBatch(index, x, y, lower, upper, correct, broken)


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
    generator: torch.Generator | None = None,
) -> list[dict]:
    """One dict of error rates per epsilon, over every batch ``(x, y, ...)``."""
    metrics = [CertificationErrors(methods) for _ in eps_values]
    for b in attacked_batches(net, batches, mean, std, eps_values, pgd_steps, pgd_restarts, generator):
        verified = {
            m: is_verified(bound) for m, bound in _margins(bounder, b.x, b.lower, b.upper, b.y, methods).items()
        }
        for method, flags in verified.items():
            if (flags & b.broken).any():
                raise UnsoundBoundError(
                    f"{method} verified {int((flags & b.broken).sum())} "
                    f"example(s) at eps={eps_values[b.eps_index]} that PGD breaks"
                )
        metrics[b.eps_index].update(b.correct, verified, b.broken)
    rows = []
    for eps, metric in zip(eps_values, metrics):
        rates = {k: float(v) for k, v in metric.compute().items()}
        verified = {m: rates[f"verified_err_{m}"] for m in methods} | {"best": rates["verified_err"]}
        rows.append(
            {
                "eps_eval": eps,
                "n": int(metric.examples),
                "clean_err": rates["clean_err"],
                "pgd_err": rates.get("pgd_err"),
                "verified_err": verified,
            }
        )
    return rows
