"""Mean ± std over seeds, in the layout of the paper's tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from certlight.errors import CertlightError
from certlight.reporting.paper import paper_numbers, printed_mean_std
from certlight.reporting.results import Record


def verified_unit(verifier: str) -> str:
    """The unit of a verified-error heading; it names the verifier unless it is ``best``, so a
    table column and a figure axis say alike whose verified error they show."""
    return "%" if verifier == "best" else f"%, {verifier}"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1; 0 for a single run)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _mean_pm_std(values: list[float]) -> str:
    """``mean ± std`` over seeds; a single run has no spread to show, so just its value."""
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}" if len(values) > 1 else f"{mean:.2f}"


def _eps(value: float, dataset: str) -> str:
    """CIFAR radii in the papers' x/255 form (8/255, 8.8/255); others as plain numbers."""
    return f"{value * 255:.4g}/255" if dataset == "cifar10" else f"{value:g}"


def group_records(records: list[Record]) -> list[list[Record]]:
    """Records of one setting together; two runs of the same seed in one setting are refused:
    they are not independent, and pooling them would shrink the spread."""
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        group = groups.setdefault(record.group, [])
        twin = next((r for r in group if r.seed == record.seed), None)
        if twin is not None:
            raise CertlightError(
                f"{twin.path} and {record.path} are two runs of seed {record.seed} in the same setting; "
                "a table pools independent seeds only: pass one of them"
            )
        group.append(record)
    # Within a setting, the paper's row order: baseline, auto-eps, re-weight, both.
    return sorted(
        groups.values(),
        key=lambda g: (
            g[0].dataset,
            g[0].model,
            g[0].method,
            g[0].epochs or 0,
            g[0].eps_eval,
            g[0].eps_train,
            g[0].reweight != "off",
            g[0].reweight,
            g[0].auto_eps != "off",
            g[0].auto_eps,
            repr(g[0].group),
        ),  # repr: a group may hold None beside a number
    )


def paper_row(first: Record) -> tuple[str, str] | None:
    """The paper's (clean, verified) for this record's setting, if the paper ran it and the
    run did all of it: every epoch, the whole training set, the whole test set."""
    if not first.full_setting:
        return None
    return paper_numbers(
        first.dataset,
        first.model,
        first.method,
        first.epochs,
        first.eps_eval,
        first.eps_train,
        first.reweight != "off",
        first.auto_eps != "off",
    )


def _epochs(record: Record) -> str:
    shown = "?" if record.epochs is None else str(record.epochs)
    return shown if record.complete else f"{shown} of {record.max_epochs}"


def _examples(record: Record) -> str:
    return f"{record.train_examples or 'all'}/{record.test_examples or 'all'}"


def _label_cells(first: Record) -> list[str]:
    return [
        first.dataset,
        first.model,
        first.method,
        _epochs(first),
        _examples(first),
        _eps(first.eps_eval, first.dataset),
        _eps(first.eps_train, first.dataset),
        first.reweight,
        first.auto_eps,
    ]


def _differences(groups: list[list[Record]]) -> list[str]:
    """For rows whose printed cells are identical, the config keys (and values) that split them."""
    shown = [tuple(_label_cells(g[0])) for g in groups]
    notes = []
    for index, group in enumerate(groups):
        twins = [groups[i][0] for i, cells in enumerate(shown) if cells == shown[index] and i != index]
        mine = group[0]
        keys = sorted(
            {
                k
                for other in twins
                for k in mine.setting.keys() | other.setting.keys()
                if mine.setting.get(k) != other.setting.get(k)
            }
        )
        note = [f"{k}={mine.setting.get(k, '–')}" for k in keys]
        if any(other.path.name != mine.path.name for other in twins):
            # the same runs evaluated twice: by training's last evaluation and by certlight.verify
            note.append(f"from {mine.path.name}")
        notes.append(", ".join(note))
    return notes


@dataclass(frozen=True)
class SeedRow:
    """One setting's per-seed errors (%) and the paper's (mean, std) where it has them."""

    setting: str
    tactics: str
    clean: list[float]
    verified: list[float]
    paper_clean: tuple[float, float] | None
    paper_verified: tuple[float, float] | None


def seed_rows(records: list[Record]) -> list[SeedRow]:
    """The rows of ``markdown_table`` with every seed kept, for plotting the spread itself."""
    rows = []
    for group in group_records(records):
        first = group[0]
        tactics = [f"re-weight {first.reweight}"] * (first.reweight != "off") + [f"auto-eps {first.auto_eps}"] * (
            first.auto_eps != "off"
        )
        paper = paper_row(first)
        rows.append(
            SeedRow(
                setting=f"{first.dataset} {first.model} {first.method}, {_epochs(first)} epochs, "
                f"eps {_eps(first.eps_eval, first.dataset)} / train {_eps(first.eps_train, first.dataset)}",
                tactics=" + ".join(tactics) or "baseline",
                clean=[100 * r.clean_err for r in group],
                verified=[100 * r.verified_err for r in group],
                paper_clean=printed_mean_std(paper[0]) if paper else None,
                paper_verified=printed_mean_std(paper[1]) if paper else None,
            )
        )
    return rows


def markdown_table(records: list[Record], with_paper: bool = False, verifier: str = "best") -> str:
    """One row per setting. ``epochs`` says "k of n" for a run that stopped early, ``examples``
    the training/test examples used; rows that would print alike name the keys that split them."""
    groups = group_records(records)
    notes = _differences(groups)
    columns = [
        "dataset",
        "model",
        "method",
        "epochs",
        "examples (train/test)",
        "eps_eval",
        "eps_train",
        "re-weight",
        "auto-eps",
        "seeds",
        "clean err (%)",
        f"verified err ({verified_unit(verifier)})",
    ]
    if with_paper:
        columns += ["paper clean (%)", "paper verified (%)"]
    if any(notes):
        columns.append("differs in")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for group, note in zip(groups, notes):
        first = group[0]
        clean = _mean_pm_std([100 * r.clean_err for r in group])
        verified = _mean_pm_std([100 * r.verified_err for r in group])
        seeds = ",".join(str(s) for s in sorted(r.seed for r in group))
        cells = [*_label_cells(first), seeds, clean, verified]
        if with_paper:
            paper = paper_row(first)
            cells += list(paper) if paper else ["–", "–"]
        if any(notes):
            cells.append(note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid_table(records: list[Record]) -> str:
    """The paper's Table 1: verified error (%) with eps_train as rows and eps_eval as columns."""
    settings = {(r.dataset, r.model, r.method, r.reweight, r.auto_eps) for r in records}
    if len(settings) != 1:
        listed = "; ".join(", ".join(s) for s in sorted(settings))
        raise CertlightError(f"--grid needs runs of one setting (dataset, model, method, tactics); got: {listed}")
    dataset = records[0].dataset
    columns = sorted({r.eps_eval for r in records})
    rows = sorted({r.eps_train for r in records})
    lines = [
        "| eps_train \\ eps_eval | " + " | ".join(_eps(c, dataset) for c in columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for row in rows:
        cells = []
        for column in columns:
            values = [100 * r.verified_err for r in records if r.eps_train == row and r.eps_eval == column]
            cells.append(f"{mean_std(values)[0]:.2f}" if values else "–")
        lines.append(f"| {_eps(row, dataset)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
