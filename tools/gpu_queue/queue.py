"""The campaign's queue: the paper runs still to do, as a JSON file written atomically (a crash
mid-write leaves the previous file whole)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

PENDING, DONE = "pending", "done"

# Rows of each paper table: (name, overrides) for baseline, re-weighting, auto-eps, both.
ROWS = (
    ("baseline", ("reweight.gamma=0", "auto_eps.eps_maxoff=0")),
    ("reweight", ("reweight.gamma=5", "auto_eps.eps_maxoff=0")),
    ("auto_eps", ("reweight.gamma=0", "auto_eps.eps_maxoff=0.15")),
    ("both", ("reweight.gamma=5", "auto_eps.eps_maxoff=0.15")),
)
# Table 4 DM-large IBP first, then Table 6 DM-large 0.1/0.2, then Table 5 CROWN-IBP.
TABLES = (
    ("t4_large_ibp", "paper_mnist_large"),
    ("t6_large_eval01", "paper_mnist_large_eval01"),
    ("t5_large_crown_ibp", "paper_mnist_large_crown_ibp"),
)
SEEDS = (0, 1, 2)


def paper_queue() -> list[dict]:
    """Every run of the three tables, seed 0 of every row before any seed 1."""
    return [
        {
            "name": f"{table}_{row}_seed{seed}",
            "overrides": [f"experiment={experiment}", *overrides, f"seed={seed}"],
            "status": PENDING,
        }
        for seed in SEEDS
        for table, experiment in TABLES
        for row, overrides in ROWS
    ]


def read_queue(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def write_json(path: Path, data) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path`` (atomic on POSIX):
    the queue and the campaign's state survive a crash mid-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def pending(queue: list[dict]) -> list[dict]:
    return [entry for entry in queue if entry["status"] != DONE]
