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
) -> list[dict]:
    """Per eps: clean, PGD and cascade-verified error, and per stage how many examples it ran
    on and verified, its time and its peak memory."""
    totals = [{"n": 0, "clean_wrong": 0, "broken": 0, "stages": {s: {"ran_on": 0, "verified": 0, "seconds": 0.0, "peak_memory_mb": 0.0} for s in stages}} for _ in eps_values]
    for b in attacked_batches(net, batches, mean, std, eps_values, pgd_steps, pgd_restarts):
        total = totals[b.eps_index]
        undecided = ~b.broken
        for stage in stages:
            index = undecided.nonzero().squeeze(1)
            if index.numel() == 0:
                break
            record = total["stages"][stage]
            start = time.perf_counter()
            with PeakMemory(b.x.device) as peak, torch.no_grad():
                verified = is_verified(bounder.margins(b.x[index], b.lower[index], b.upper[index], b.y[index], stage))
            record["seconds"] += time.perf_counter() - start
            record["peak_memory_mb"] = max(record["peak_memory_mb"], peak.bytes / 2**20)
            record["ran_on"] += index.numel()
            record["verified"] += int(verified.sum())
            undecided[index[verified]] = False
        total["n"] += b.y.numel()
        total["clean_wrong"] += int((~b.correct).sum())
        total["broken"] += int(b.broken.sum())
    rows = []
    for eps, total in zip(eps_values, totals):
        n = max(total["n"], 1)
        verified = sum(s["verified"] for s in total["stages"].values())
        rows.append({
            "eps_eval": eps, "n": total["n"], "clean_err": total["clean_wrong"] / n, "pgd_err": total["broken"] / n,
            "verified_err": {"cascade": (total["n"] - verified) / n},
            "cascade": [{"stage": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in s.items()}} for name, s in total["stages"].items()],
        })
    return rows
