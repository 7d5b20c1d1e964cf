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

from certlight.attacks import attack_succeeds, pgd_margins
from certlight.bounds import input_box, is_verified
from certlight.evaluation.memory import PeakMemory

CASCADE = ("ibp", "crown_ibp", "crown", "alpha_crown")


@torch.no_grad()
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
    net.eval()
    totals = [{"n": 0, "clean_wrong": 0, "broken": 0, "stages": {s: {"ran_on": 0, "verified": 0, "seconds": 0.0, "peak_memory_mb": 0.0} for s in stages}} for _ in eps_values]
    for batch in batches:
        x, y = batch[0], batch[1]
        correct = net(x).argmax(1) == y
        for eps, total in zip(eps_values, totals):
            lower, upper = input_box(x, eps, mean, std)
            with torch.enable_grad():
                broken = attack_succeeds(pgd_margins(net, x, y, lower, upper, pgd_steps, pgd_restarts)) | ~correct
            undecided = ~broken
            for stage in stages:
                index = undecided.nonzero().squeeze(1)
                if index.numel() == 0:
                    break
                record = total["stages"][stage]
                start = time.perf_counter()
                with PeakMemory(x.device) as peak:
                    verified = is_verified(bounder.margins(x[index], lower[index], upper[index], y[index], stage))
                record["seconds"] += time.perf_counter() - start
                record["peak_memory_mb"] = max(record["peak_memory_mb"], peak.bytes / 2**20)
                record["ran_on"] += index.numel()
                record["verified"] += int(verified.sum())
                undecided[index[verified]] = False
            total["n"] += y.numel()
            total["clean_wrong"] += int((~correct).sum())
            total["broken"] += int(broken.sum())
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
