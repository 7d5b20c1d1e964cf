"""Figures: margin distributions (the paper's Figure 3) and per-seed errors beside the paper's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from certlight.errors import CertlightError
from certlight.reporting.results import Record
from certlight.reporting.tables import seed_rows, verified_unit


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes():
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.5))
    return plt, figure, axis


def _finish(plt, figure, axis, path: Path) -> None:
    axis.axvline(0.0, color="black", linewidth=0.8)
    axis.set_xlabel("margin = P(y) − max other P, worst case (eq. 6)")
    axis.set_ylabel("density")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_margins(series: dict[str, np.ndarray], path: Path, bins: np.ndarray, eps: np.ndarray | None = None) -> None:
    """Overlaid histograms (density) of raw margins, one per named series; with ``eps``, a
    second panel with the per-example training epsilon (what auto-eps did to each example)."""
    plt = _pyplot()
    figure, axes = plt.subplots(
        1, 2 if eps is not None else 1, figsize=(11 if eps is not None else 6, 3.5), squeeze=False
    )
    axis = axes[0, 0]
    for label, array in series.items():
        axis.hist(np.clip(array, bins[0], bins[-1]), bins=bins, alpha=0.5, density=True, label=label)
    if eps is not None:
        eps_axis = axes[0, 1]
        eps_axis.hist(eps, bins=25, color="tab:green")
        eps_axis.set_xlabel("per-example training eps (auto-eps)")
        eps_axis.set_ylabel("examples")
    _finish(plt, figure, axis, path)


def load_histograms(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "margin_histograms.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CertlightError(f"{path} not found: is {run_dir} a training run directory?") from None
    except json.JSONDecodeError as error:
        raise CertlightError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None


def plot_margin_comparison(
    run_dirs: list[Path], path: Path, key: str = "test_margin", labels: list[str] | None = None
) -> None:
    """Last-epoch margin distributions of several runs, as step outlines on shared bins."""
    plt, figure, axis = _axes()
    for index, run_dir in enumerate(run_dirs):
        history = load_histograms(run_dir)
        if not history or key not in history[-1]:
            raise CertlightError(f"{run_dir}/margin_histograms.json has no '{key}' counts")
        last = history[-1]
        bins, counts = np.asarray(last["bins"]), np.asarray(last[key], dtype=float)
        density = counts / max(counts.sum(), 1) / np.diff(bins)
        label = labels[index] if labels else f"{Path(run_dir).name} (epoch {last['epoch']})"
        axis.stairs(density, bins, label=label, fill=index == 0, alpha=0.5 if index == 0 else 1.0)
    _finish(plt, figure, axis, path)


def plot_seed_comparison(records: list[Record], path: Path, verifier: str = "best") -> None:
    """Every seed's clean and verified error as a dot, with the paper's mean ± std under it.

    Two or three seeds make a mean ± std that hides whether rows overlap; the dots show it.
    The verified axis names ``verifier`` (``verified_unit``), so a figure taken out of its
    report still says whose verified error it shows.
    """
    rows = seed_rows(records)
    settings = sorted({row.setting for row in rows})
    labels = [row.tactics if len(settings) == 1 else f"{row.setting}\n{row.tactics}" for row in rows]
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 1.6 + 0.6 * len(rows)), sharey=True)
    for axis, metric, title in zip(
        axes, ("clean", "verified"), ("clean error (%)", f"verified error ({verified_unit(verifier)})")
    ):
        for position, row in enumerate(rows):
            values = getattr(row, metric)
            axis.plot(
                values,
                [position - 0.12] * len(values),
                "o",
                color="C0",
                alpha=0.8,
                label="ours, one dot a seed" if position == 0 else None,
            )
            axis.plot(
                [np.mean(values)],
                [position - 0.12],
                "|",
                color="C0",
                markersize=16,
                label="ours, mean" if position == 0 else None,
            )
            paper = getattr(row, f"paper_{metric}")
            if paper:
                axis.errorbar(
                    [paper[0]],
                    [position + 0.12],
                    xerr=[paper[1]],
                    fmt="s",
                    color="C3",
                    capsize=4,
                    label="paper, mean ± std" if position == 0 else None,
                )
        axis.set_xlabel(title)
        axis.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)
    figure.legend(*axes[1].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    if len(settings) == 1:
        figure.suptitle(settings[0], fontsize=10)
    figure.tight_layout(rect=(0, 0.4 / figure.get_figheight(), 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
