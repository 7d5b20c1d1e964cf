"""What comes back from a GPU command: at most 8 files of at most 16 MiB each in ``$OUT``."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from certlight.errors import CertlightError

MAX_FILES, MAX_BYTES = 8, 16 * 2**20
ARCHIVE = "campaign.tar.gz"
# Per run part: what the report and the result files need (not checkpoints).
KEPT = ("results.json", "margin_histograms.json", "verify.json")


def pack_outputs(state: Path, out: Path) -> list[Path]:
    """``campaign.tar.gz`` (every run part's result files, the benchmark sections, state.json),
    plus ``queue.json`` and ``campaign.log`` beside it for a quick look."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out / ARCHIVE, "w:gz") as archive:
        for part in sorted((state / "runs").glob("*/part*")):
            if part.is_dir():
                for name in KEPT:
                    if (part / name).is_file():
                        archive.add(part / name, arcname=str((part / name).relative_to(state)))
        for extra in sorted((state / "bench").glob("*.md")) + [state / "state.json", state / "queue.json"]:
            if extra.is_file():
                archive.add(extra, arcname=str(extra.relative_to(state)))
    written = [out / ARCHIVE]
    for name in ("queue.json", "campaign.log"):
        if (state / name).is_file():
            shutil.copy2(state / name, out / name)
            written.append(out / name)
    check_outputs(out)
    return written


def check_outputs(out: Path) -> None:
    files = [f for f in out.rglob("*") if f.is_file()]
    if len(files) > MAX_FILES:
        raise CertlightError(f"{out} holds {len(files)} files; at most {MAX_FILES} come back")
    for file in files:
        if file.stat().st_size > MAX_BYTES:
            raise CertlightError(f"{file} is {file.stat().st_size / 2**20:.1f} MiB; at most 16 MiB per file comes back")
