"""An Optuna study written by ``hparams_search=...``: its best trials, and the objective
against each searched parameter."""

from __future__ import annotations

from pathlib import Path

from certlight.errors import CertlightError


def load_study(path: Path):
    import optuna

    if not path.is_file():
        raise CertlightError(f"--study {path}: no such file (the search writes <sweep dir>/study.db)")
    storage = f"sqlite:///{path.resolve()}"
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    if len(names) != 1:
        raise CertlightError(f"--study {path} holds {len(names)} studies ({', '.join(names) or 'none'}); expected one")
    return optuna.load_study(study_name=names[0], storage=storage)


def study_table(study, top: int = 5) -> str:
    """The ``top`` best finished trials (lowest objective first) and how many trials ended how."""
    import optuna

    done = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    if not done:
        raise CertlightError(f"study {study.study_name!r} has no finished trial yet")
    params = sorted({name for t in done for name in t.params})
    states = {}
    for t in study.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    lines = [
        f"study {study.study_name!r}: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items())),
        "",
        "| rank | trial | objective | " + " | ".join(params) + " |",
        "|---|---|---|" + "---|" * len(params),
    ]
    for rank, t in enumerate(done[:top], 1):
        values = " | ".join(f"{t.params[p]:.4g}" if p in t.params else "" for p in params)
        lines.append(f"| {rank} | {t.number} | {t.value:.4f} | {values} |")
    return "\n".join(lines)


def plot_study(study, path: Path) -> None:
    """One panel per parameter: every finished trial's objective against its value, best in red."""
    import optuna

    from certlight.reporting.figures import _pyplot

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    params = sorted({name for t in done for name in t.params})
    if not done or not params:
        raise CertlightError(f"study {study.study_name!r} has no finished trial with parameters to plot")
    best = min(done, key=lambda t: t.value)
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 3), sharey=True, squeeze=False)
    for axis, name in zip(axes[0], params):
        points = [(t.params[name], t.value) for t in done if name in t.params]
        axis.scatter(*zip(*points), s=18, color="tab:blue")
        axis.scatter([best.params[name]], [best.value], s=40, color="tab:red", label=f"best (trial {best.number})")
        axis.set_xlabel(name)
    axes[0][0].set_ylabel("objective")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
