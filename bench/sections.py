"""What every benchmark script prints and appends to a results file."""

from __future__ import annotations

import datetime
import shlex
import sys


def heading(title: str) -> list[str]:
    """The section title with today's date and the exact command line that produced it."""
    return [
        f"### {title}, {datetime.date.today().isoformat()}",
        "",
        f"- command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
    ]


def emit(lines: list[str], out: str | None) -> None:
    """Print the section; append it to ``out`` when given."""
    table = "\n".join(lines) + "\n"
    print(table)
    if out:
        with open(out, "a") as handle:
            handle.write("\n" + table)
