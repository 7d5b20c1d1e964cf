"""Figures: margin distributions (the paper's Figure 3), from raw margins or saved counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from certlight.errors import CertlightError


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def plot_margins(series: dict[str, np.ndarray], path: Path, bins: np.ndarray) -> None:
    """Overlaid histograms (density) of raw margins, one per named series."""
    plt, figure, axis = _axes()
    for label, array in series.items():
        axis.hist(np.clip(array, bins[0], bins[-1]), bins=bins, alpha=0.5, density=True, label=label)
    _finish(plt, figure, axis, path)


def load_histograms(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "margin_histograms.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CertlightError(f"{path} not found: is {run_dir} a training run directory?") from None
    except json.JSONDecodeError as error:
        raise CertlightError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None


def plot_margin_comparison(run_dirs: list[Path], path: Path, key: str = "test_margin", labels: list[str] | None = None) -> None:
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
