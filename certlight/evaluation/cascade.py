"""A verification cascade: PGD first, then IBP -> CROWN-IBP -> CROWN -> α-CROWN, each stage run
only on the examples that are still neither verified nor broken.

Cheap stages decide most examples, so the expensive ones run on the few that are left. Each
stage is sound on its own, so the cascade's verified set is the union of what its stages would
verify separately (tests/test_cascade.py checks exactly that).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from certlight.bounds import is_verified
from certlight.evaluation.certify import attacked_batches
from certlight.evaluation.memory import PeakMemory
from certlight.metrics import CertificationErrors

CASCADE = ("ibp", "crown_ibp", "crown", "alpha_crown")


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
) -> list[dict]:
    """Per eps: clean, PGD and cascade-verified error (counted by the certification metric), and
    per stage how many examples it ran on and verified, its time and its peak memory."""
    metrics = [CertificationErrors(["cascade"]) for _ in eps_values]
    records = [{s: {"ran_on": 0, "verified": 0, "seconds": 0.0, "peak_memory_mb": 0.0} for s in stages} for _ in eps_values]
    for b in attacked_batches(net, batches, mean, std, eps_values, pgd_steps, pgd_restarts, generator):
        undecided = ~b.broken
        for stage in stages:
            index = undecided.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            record = records[b.eps_index][stage]
            start = time.perf_counter()
            with PeakMemory(b.x.device) as peak, torch.no_grad():
                verified = is_verified(bounder.margins(b.x[index], b.lower[index], b.upper[index], b.y[index], stage))
            record["seconds"] += time.perf_counter() - start
            record["peak_memory_mb"] = max(record["peak_memory_mb"], peak.bytes / 2**20)
            record["ran_on"] += index.numel()
            record["verified"] += int(verified.sum())
            undecided[index[verified]] = False
        verified = ~b.broken & ~undecided  # broken includes misclassified
        metrics[b.eps_index].update(b.correct, {"cascade": verified}, b.broken)
    rows = []
    for eps, metric, record in zip(eps_values, metrics, records):
        rates = {k: float(v) for k, v in metric.compute().items()}
        rows.append({
            "eps_eval": eps, "n": int(metric.examples), "clean_err": rates["clean_err"], "pgd_err": rates.get("pgd_err"),
            "verified_err": {"cascade": rates["verified_err_cascade"]},
            "cascade": [{"stage": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}} for name, s in record.items()],
        })
    return rows
