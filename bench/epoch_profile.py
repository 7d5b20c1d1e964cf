"""An epoch against its training steps, from the runs' own logs (EpochTimer's ``time/epoch_s``
and ``time/train_steps_s`` in ``csv/*/metrics.csv``).

The runs are made as result runs are (two side by side, one thread each), so the ratio is
measured in the setting it is about. Epochs before ``--from-epoch`` (e.g. the warm-up at eps 0,
whose steps are plain training) can be left out of the medians; the totals cover every epoch.

    python bench/epoch_profile.py RUN [RUN ...] --from-epoch 3 --out results/performance.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sections import emit, heading  # noqa: E402  (bench/sections.py)


def timings(run: Path) -> list[tuple[int, float, float]]:
    """(epoch, epoch seconds, step seconds) of every timed epoch of a run folder."""
    rows = []
    for path in sorted(run.glob("csv/*/metrics.csv")):
        with open(path) as handle:
            for row in csv.DictReader(handle):
                if row.get("time/epoch_s") and row.get("time/train_steps_s"):
                    rows.append((len(rows), float(row["time/epoch_s"]), float(row["time/train_steps_s"])))
    if not rows:
        raise SystemExit(f"{run}: no time/epoch_s in csv/*/metrics.csv (a run without the epoch timer?)")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--from-epoch", type=int, default=0, help="first epoch of the medians")
    parser.add_argument("--title", default="An epoch against its training steps")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    lines = heading(args.title) + [
        "",
        f"| run | epochs | median epoch s (from epoch {args.from_epoch}) | median steps s | epoch / steps, those "
        "epochs | epoch / steps, all epochs |",
        "|---|---|---|---|---|---|",
    ]
    for run in args.runs:
        rows = timings(run)
        chosen = [r for r in rows if r[0] >= args.from_epoch] or rows
        epoch, steps = [r[1] for r in chosen], [r[2] for r in chosen]
        lines.append(
            f"| {run.name} | {len(rows)} | {statistics.median(epoch):.2f} | {statistics.median(steps):.2f} "
            f"| {sum(epoch) / sum(steps):.3f} | {sum(r[1] for r in rows) / sum(r[2] for r in rows):.3f} |"
        )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
