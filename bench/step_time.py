"""Training-step cost of certified training, side by side in one process.

Times the real LightningModule.training_step (+ backward + Adam step) of every variant on the
same model and batch, the variants taking turns step by step: plain (clean loss only), IBP, CROWN-IBP (beta=1), the same with
re-weighting + auto-eps, and auto_LiRPA's IBP / CROWN-IBP when it is installed. Reports the
median over --steps steps after --warmup steps, and ratios to the plain step.

    python bench/step_time.py --out results/performance.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from certlight.bounds.lirpa import lirpa_available  # noqa: E402
from certlight.losses import Reweighting  # noqa: E402
from certlight.models import dm_large, dm_small  # noqa: E402
from certlight.modules import AutoEpsilon, CrownIBPModule, IBPModule, NaturalModule  # noqa: E402
from certlight.pipeline import hardware  # noqa: E402
from certlight.schedules import ScheduleValues  # noqa: E402

SETTINGS = {
    "dm_small/mnist": (dm_small, (1, 28, 28), 100),
    "dm_large/mnist": (dm_large, (1, 28, 28), 64),
    "dm_large/cifar": (dm_large, (3, 32, 32), 64),
}


def variants(with_lirpa: bool):
    plain = {"cls": NaturalModule}
    out = {
        "plain": plain,
        "ibp": {"cls": IBPModule},
        "ibp+reweight+auto_eps": {"cls": IBPModule, "tactics": True},
        "crown_ibp": {"cls": CrownIBPModule},
        "crown_ibp+reweight+auto_eps": {"cls": CrownIBPModule, "tactics": True},
    }
    if with_lirpa:
        out["lirpa_ibp"] = {"cls": IBPModule, "backend": "auto_lirpa"}
        out["lirpa_crown_ibp"] = {"cls": CrownIBPModule, "backend": "auto_lirpa"}
    return out


def build_variant(build, shape, spec, device):
    torch.manual_seed(0)
    net = build(shape[0], shape[1], 10)
    tactics = spec.get("tactics", False)
    module = spec["cls"](
        net,
        mean=[0.0] * shape[0],
        std=[1.0] * shape[0],
        eps_eval=0.3,
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
        reweight=Reweighting("symmetric", gamma=5.0, alpha=0.1) if tactics else None,
        auto_eps=AutoEpsilon(60000, eps_maxoff=0.1, eps_train=0.4) if tactics else None,
        bounds_backend=spec.get("backend", "native"),
    ).to(device)
    module.train()
    module.schedule_values = ScheduleValues(eps=0.2, kappa=0.5, beta=1.0)
    return module, module.configure_optimizers()


def one_step(module, optimizer, batch, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = module.training_step(batch, 0)
    loss = out["loss"] if isinstance(out, dict) else out
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_variants(build, shape, batch, specs, device, steps, warmup) -> dict[str, float]:
    """Median step time per variant; variants take turns step by step, so drift in the
    machine's speed affects all of them alike."""
    modules = {name: build_variant(build, shape, spec, device) for name, spec in specs.items()}
    torch.manual_seed(1)
    x = torch.rand(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    data = (x, y, torch.randperm(60000, device=device)[:batch])
    times: dict[str, list[float]] = {name: [] for name in modules}
    for step in range(warmup + steps):
        for name, (module, optimizer) in modules.items():
            elapsed = one_step(module, optimizer, data, device)
            if step >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["dm_small/mnist", "dm_large/cifar"], choices=list(SETTINGS))
    parser.add_argument("--variants", nargs="+", help="only these variants (default: all); 'plain' is always timed")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="append the markdown table to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    lines = [
        f"### Step time, {datetime.date.today().isoformat()}",
        "",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        f"- hardware: {hardware() if device.type == 'cuda' else hardware().split(',')[0]}, torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), device {device}, Python {platform.python_version()}",
        f"- median of {args.steps} steps after {args.warmup} warm-up steps, variants interleaved step by step; eps 0.2, kappa 0.5, beta 1 (CROWN-IBP pass always on)",
        "",
        "| setting | batch | variant | step (ms) | x plain |",
        "|---|---|---|---|---|",
    ]
    for setting in args.settings:
        build, shape, batch = SETTINGS[setting]
        specs = variants(lirpa_available())
        if args.variants:
            unknown = set(args.variants) - set(specs)
            if unknown:
                parser.error(f"unknown variants {sorted(unknown)}; allowed: {', '.join(specs)}")
            specs = {name: spec for name, spec in specs.items() if name == "plain" or name in args.variants}
        results = time_variants(build, shape, batch, specs, device, args.steps, args.warmup)
        print(setting, {name: f"{1000 * seconds:.1f} ms" for name, seconds in results.items()}, flush=True)
        for name, seconds in results.items():
            lines.append(f"| {setting} | {batch} | {name} | {1000 * seconds:.1f} | {seconds / results['plain']:.2f} |")
        for ours, theirs in (("ibp", "lirpa_ibp"), ("crown_ibp", "lirpa_crown_ibp")):
            if ours in results and theirs in results:
                lines.append(f"| {setting} | {batch} | **{theirs} / {ours}** | | **{results[theirs] / results[ours]:.2f}** |")
        for base in ("ibp", "crown_ibp"):
            if base not in results or f"{base}+reweight+auto_eps" not in results:
                continue
            overhead = results[f"{base}+reweight+auto_eps"] / results[base] - 1
            lines.append(f"| {setting} | {batch} | **re-weight + auto-eps overhead on {base}** | | **{100 * overhead:+.1f}%** |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n" + table)


if __name__ == "__main__":
    main()
