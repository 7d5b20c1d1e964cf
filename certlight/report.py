"""Paper-style tables from runs and sweeps, and margin-distribution figures.

certlight-report multirun/2026-11-23/10-00-00 [--paper] [--plot seeds.png]   (or python -m certlight.report)
python -m certlight.report outputs/verify/ --grid      # Table 1 from verify.json files
python -m certlight.report --margins RUN_A RUN_B --out figure3.png
python -m certlight.report --study multirun/optuna/tactics/study.db [--plot study.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certlight.errors import CertlightError
from certlight.reporting import (
    find_result_files,
    grid_table,
    markdown_table,
    plot_margin_comparison,
    plot_seed_comparison,
    read_records,
)
from certlight.reporting.study import load_study, plot_study, study_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="certlight-report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="*", help="run or multirun directories, or results.json / verify.json files")
    parser.add_argument("--paper", action="store_true", help="add the paper's numbers for the same setting")
    parser.add_argument("--grid", action="store_true", help="verified error as an eps_train x eps_eval grid (Table 1)")
    parser.add_argument(
        "--verifier",
        default="best",
        help="whose verified error: best (any sound method; default), ibp, crown_ibp, crown, alpha_crown, cascade",
    )
    parser.add_argument("--plot", metavar="PNG", help="also draw every seed's errors beside the paper's mean ± std")
    parser.add_argument(
        "--margins", nargs="+", metavar="RUN_DIR", help="compare the last-epoch margin histograms of these runs"
    )
    parser.add_argument("--labels", nargs="+", help="legend labels for --margins")
    parser.add_argument("--split", default="test", choices=["test", "train"], help="which margins --margins plots")
    parser.add_argument("--out", default="margins.png", help="figure path for --margins")
    parser.add_argument(
        "--study",
        metavar="DB",
        type=Path,
        help="an Optuna study (hparams_search): best trials; --plot: objective against each parameter",
    )
    args = parser.parse_args(argv)
    if not args.paths and not args.margins and not args.study:
        parser.error("give result paths, --margins RUN_DIR... or --study DB")
    if args.plot and not (args.paths or args.study):
        parser.error("--plot draws result paths or a study: give them")
    if args.paths and args.study:
        parser.error("--study reads one study; give result paths in a separate call")
    if args.labels and len(args.labels) != len(args.margins or []):
        parser.error(
            f"--labels gives {len(args.labels)} labels for "
            f"{len(args.margins or [])} run(s) in --margins: give one per run"
        )
    for figure in (args.plot if args.paths or args.study else None, args.out if args.margins else None):
        if figure and not Path(figure).parent.is_dir():
            print(
                f"certlight.report: error: --{'plot' if figure == args.plot else 'out'} "
                f"{figure}: folder {Path(figure).parent} does not exist",
                file=sys.stderr,
            )
            return 2
    try:
        if args.paths:
            records = [record for path in find_result_files(args.paths) for record in read_records(path, args.verifier)]
            print(
                grid_table(records)
                if args.grid
                else markdown_table(records, with_paper=args.paper, verifier=args.verifier)
            )
            if args.plot:
                plot_seed_comparison(records, Path(args.plot), args.verifier)
                print(f"written {args.plot}")
        if args.study:
            study = load_study(args.study)
            print(study_table(study))
            if args.plot:
                plot_study(study, Path(args.plot))
                print(f"written {args.plot}")
        if args.margins:
            plot_margin_comparison([Path(p) for p in args.margins], Path(args.out), f"{args.split}_margin", args.labels)
            print(f"written {args.out}")
    except CertlightError as error:
        print(f"certlight.report: error: {error}", file=sys.stderr)
        return 2
    return 0


def cli() -> None:
    """The ``certlight-report`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
