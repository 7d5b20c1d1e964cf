"""Training-step cost of certified training, side by side in one process.

Times the real LightningModule.training_step (+ backward + Adam step) of every variant on the
same model and batch, the variants taking turns step by step: plain (clean loss only), IBP,
CROWN-IBP (beta=1), the same with re-weighting + auto-eps, CROWN-IBP with bounds.compile
(compiled relaxations), TAPS and STAPS (their latent attacks on), and auto_LiRPA's IBP / CROWN-IBP
when it is installed. Reports the median over --steps steps after --warmup steps (compiling
happens in the warm-up), ratios to the plain step, and on CUDA each variant's peak memory.

    python bench/step_time.py --out results/performance.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sections import emit, heading  # noqa: E402  (bench/sections.py)

from certlight.bounds.backends import make_backend  # noqa: E402
from certlight.bounds.lirpa import lirpa_available  # noqa: E402
from certlight.losses import Reweighting  # noqa: E402
from certlight.methods import (  # noqa: E402
    AutoEpsilon,
    CrownIBPModule,
    IBPModule,
    NaturalModule,
    STAPSModule,
    TAPSModule,
)
from certlight.models import dm_large, dm_small  # noqa: E402
from certlight.runs.host_memory import keep_freed_memory  # noqa: E402
from certlight.runs.pipeline import hardware  # noqa: E402
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
        "crown_ibp+compile": {"cls": CrownIBPModule, "compile": True},
        # TAPS / STAPS after the ramp (their recipes' latent attacks: conf/method/{taps,staps}.yaml)
        "taps": {"cls": TAPSModule, "options": {"ibp_while_ramping": False}},
        "staps": {
            "cls": STAPSModule,
            "options": {"split": 5, "latent_steps": 10, "attack_steps": 10, "ibp_while_ramping": False},
        },
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
        bounds=partial(make_backend, spec.get("backend", "native"), compile=spec.get("compile", False)),
        **spec.get("options", {}),
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
    medians = {name: statistics.median(values) for name, values in times.items()}
    return medians, peak_memory(modules, data, device)


def peak_memory(modules, data, device) -> dict[str, float | None]:
    """CUDA only: MiB a step allocates at its peak above what was already allocated."""
    if device.type != "cuda":
        return {name: None for name in modules}
    peaks = {}
    for name, (module, optimizer) in modules.items():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        resident = torch.cuda.memory_allocated()
        one_step(module, optimizer, data, device)
        peaks[name] = (torch.cuda.max_memory_allocated() - resident) / 2**20
    return peaks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["dm_small/mnist", "dm_large/cifar"], choices=list(SETTINGS))
    parser.add_argument("--variants", nargs="+", help="only these variants (default: all); 'plain' is always timed")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--glibc-malloc-defaults",
        action="store_true",
        help="on the CPU, leave glibc's allocator as it is "
        "(training keeps freed memory: certlight/runs/host_memory.py)",
    )
    parser.add_argument("--out", help="append the markdown table to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    kept_memory = device.type == "cpu" and not args.glibc_malloc_defaults and keep_freed_memory()
    lines = [
        *heading("Step time"),
        f"- hardware: {hardware() if device.type == 'cuda' else hardware().split(',')[0]}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU thread(s), device {device}, Python {platform.python_version()}",
        f"- median of {args.steps} steps after {args.warmup} warm-up steps, variants "
        "interleaved step by step; eps 0.2, kappa 0.5, beta 1 (CROWN-IBP pass always on)"
        + ("; freed memory kept for reuse, as training on the CPU does" if kept_memory else ""),
        "",
        "| setting | batch | variant | step (ms) | x plain | step peak memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for setting in args.settings:
        build, shape, batch = SETTINGS[setting]
        specs = variants(lirpa_available())
        if args.variants:
            unknown = set(args.variants) - set(specs)
            if unknown:
                parser.error(f"unknown variants {sorted(unknown)}; allowed: {', '.join(specs)}")
            specs = {name: spec for name, spec in specs.items() if name == "plain" or name in args.variants}
        results, peaks = time_variants(build, shape, batch, specs, device, args.steps, args.warmup)
        print(setting, {name: f"{1000 * seconds:.1f} ms" for name, seconds in results.items()}, flush=True)
        for name, seconds in results.items():
            peak = "–" if peaks[name] is None else f"{peaks[name]:.0f}"
            lines.append(
                f"| {setting} | {batch} | {name} | {1000 * seconds:.1f} | {seconds / results['plain']:.2f} | {peak} |"
            )
        for ours, theirs in (
            ("ibp", "lirpa_ibp"),
            ("crown_ibp", "lirpa_crown_ibp"),
            ("crown_ibp+compile", "crown_ibp"),
            ("crown_ibp+compile", "lirpa_crown_ibp"),
        ):
            if ours in results and theirs in results:
                lines.append(
                    f"| {setting} | {batch} | **{theirs} / {ours}** | | **{results[theirs] / results[ours]:.2f}** | |"
                )
        for base in ("ibp", "crown_ibp"):
            if base not in results or f"{base}+reweight+auto_eps" not in results:
                continue
            overhead = results[f"{base}+reweight+auto_eps"] / results[base] - 1
            lines.append(
                f"| {setting} | {batch} | **re-weight + auto-eps overhead "
                f"on {base}** | | **{100 * overhead:+.1f}%** | |"
            )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
