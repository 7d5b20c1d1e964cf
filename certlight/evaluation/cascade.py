"""A verification cascade: PGD first, then IBP -> CROWN-IBP -> CROWN -> α-CROWN (and a complete
verifier last, ``milp``), each stage run only on the examples that are still neither verified
nor falsified.

Cheap stages decide most examples, so the expensive ones run on the few that are left. Each
stage is sound on its own, so the cascade's verified set is the union of what its stages would
verify separately (tests/test_cascade.py checks exactly that). A complete stage also falsifies:
it finds an input in the box that the network misclassifies (checked by a forward pass), so
``falsified_err`` (PGD's and the complete stage's together) is a lower bound of the robust error
as the verified error is an upper one, and an example it leaves undecided is "unknown".
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from certlight.bounds import is_verified
from certlight.evaluation.bab import BaBOptions, bab_verify
from certlight.evaluation.certify import attacked_batches
from certlight.evaluation.memory import PeakMemory
from certlight.evaluation.milp import NetworkMatrices, milp_verify
from certlight.evaluation.verdicts import FALSIFIED, VERIFIED, Outcome
from certlight.metrics import CertificationErrors

CASCADE = ("ibp", "crown_ibp", "crown", "alpha_crown")
COMPLETE = ("milp", "bab")
# A complete verifier: (net, x, y, lower, upper, sound margin bounds so far) -> one Outcome per example.
CompleteVerifier = Callable[..., list[Outcome]]


class MILPStage:
    """``milp`` as a cascade stage, with its progress bar (examples decided / left): the network's
    affine matrices built on its first batch and reused by the others; ``time_limit`` seconds per
    example."""

    def __init__(self, time_limit: float = 60.0):
        self.time_limit, self.matrices = time_limit, None

    def __call__(self, net, x, y, lower, upper, margin_lower) -> list[Outcome]:
        self.matrices = self.matrices or NetworkMatrices(net, x.shape[1:])
        return milp_verify(net, x, y, lower, upper, margin_lower, self.time_limit, self.matrices, progress=True)


class BaBStage:
    """``bab`` as a cascade stage, with its progress bar (examples decided / left)."""

    def __init__(self, options: BaBOptions | None = None):
        self.options = options or BaBOptions()

    def __call__(self, net, x, y, lower, upper, margin_lower) -> list[Outcome]:
        return bab_verify(net, x, y, lower, upper, margin_lower, self.options, progress=True)


def complete_verdicts(verifier: CompleteVerifier, net, x, y, lower, upper, margin_lower):
    """(verified, falsified, seconds per example) of a complete stage on these examples."""
    outcomes = verifier(net, x, y, lower, upper, margin_lower)
    flags = [(o.verdict == VERIFIED, o.verdict == FALSIFIED) for o in outcomes]
    verified, falsified = (torch.tensor([f[i] for f in flags], dtype=torch.bool, device=x.device) for i in (0, 1))
    return verified, falsified, [o.seconds for o in outcomes]


def cascade_certify(
    net: nn.Module,
    bounder,
    batches: Iterable,
    mean: Sequence[float],
    std: Sequence[float],
    eps_values: Sequence[float],
    stages: Sequence[str] = CASCADE,
    pgd_steps: int = 40,
    pgd_restarts: int = 1,
    generator: torch.Generator | None = None,
    complete: dict[str, CompleteVerifier] | None = None,
) -> list[dict]:
    """Per eps: clean, PGD, falsified and cascade-verified error (counted by the certification
    metric), and per stage how many examples it ran on, verified, falsified and left unknown,
    its time (and for a complete stage the median and largest per example) and peak memory.
    ``complete``: the verifier of each complete stage (default: ``milp`` and ``bab`` with their
    default time limit, 60 s per example)."""
    complete = complete or {"milp": MILPStage(), "bab": BaBStage()}
    metrics = [CertificationErrors(["cascade"]) for _ in eps_values]
    records = [{s: _empty_record(s) for s in stages} for _ in eps_values]
    falsified_total = [0 for _ in eps_values]
    for b in attacked_batches(net, batches, mean, std, eps_values, pgd_steps, pgd_restarts, generator):
        undecided, falsified = ~b.broken, torch.zeros_like(b.broken)
        best = torch.full(
            (b.y.numel(), net[-1].out_features - 1), -torch.inf, device=b.x.device
        )  # best bound per margin so far
        for stage in stages:
            index = undecided.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            record = records[b.eps_index][stage]
            start = time.perf_counter()
            with PeakMemory(b.x.device) as peak, torch.no_grad():
                if stage in COMPLETE:
                    verified, broken, per_example = complete_verdicts(
                        complete[stage], net, b.x[index], b.y[index], b.lower[index], b.upper[index], best[index]
                    )
                    record["falsified"] += int(broken.sum())
                    record["per_example_s"] += per_example
                    falsified[index[broken]] = True
                    undecided[index[broken]] = False
                else:
                    bound = bounder.margins(b.x[index], b.lower[index], b.upper[index], b.y[index], stage)
                    best[index] = torch.maximum(best[index], bound)
                    verified = is_verified(bound)
            record["seconds"] += time.perf_counter() - start
            record["peak_memory_mb"] = max(record["peak_memory_mb"], peak.bytes / 2**20)
            record["ran_on"] += index.numel()
            record["verified"] += int(verified.sum())
            undecided[index[verified]] = False
            if stage in COMPLETE:
                record["unknown"] += int(undecided[index].sum())
        verified = ~b.broken & ~undecided & ~falsified  # broken includes misclassified
        metrics[b.eps_index].update(b.correct, {"cascade": verified}, b.broken)
        falsified_total[b.eps_index] += int((b.broken | falsified).sum())
    return [
        _row(eps, metric, record, falsified)
        for eps, metric, record, falsified in zip(eps_values, metrics, records, falsified_total)
    ]


def _empty_record(stage: str) -> dict:
    record = {"ran_on": 0, "verified": 0, "seconds": 0.0, "peak_memory_mb": 0.0}
    return record | ({"falsified": 0, "unknown": 0, "per_example_s": []} if stage in COMPLETE else {})


def _row(eps: float, metric: CertificationErrors, record: dict, falsified: int) -> dict:
    rates = {k: float(v) for k, v in metric.compute().items()}
    n = int(metric.examples)
    stages = []
    for name, stage in record.items():
        stage = dict(stage)
        times = stage.pop("per_example_s", None)
        if times is not None:
            stage |= {"median_s": statistics.median(times) if times else 0.0, "max_s": max(times, default=0.0)}
        stages.append({"stage": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in stage.items()}})
    row = {"eps_eval": eps, "n": n, "clean_err": rates["clean_err"], "pgd_err": rates.get("pgd_err")}
    if any(name in COMPLETE for name in record):
        row["falsified_err"] = falsified / max(n, 1)
    return row | {"verified_err": {"cascade": rates["verified_err_cascade"]}, "cascade": stages}
