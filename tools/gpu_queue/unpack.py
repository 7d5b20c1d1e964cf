"""``python -m tools.gpu_queue unpack FOLDER``: file what a GPU command brought back into
``results/``. Unpacking the same files twice changes nothing."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from tools.gpu_queue.outputs import ARCHIVE, KEPT
from tools.gpu_queue.queue import DONE, read_queue, write_json

BEGIN, END = "<!-- campaign tables: begin (written by tools.gpu_queue unpack) -->", "<!-- campaign tables: end -->"


def unpack(source: Path, results: Path) -> dict:
    runs_out = results / "runs" / "gpu-campaign"
    with tempfile.TemporaryDirectory() as scratch:
        with tarfile.open(source / ARCHIVE) as archive:
            archive.extractall(scratch, filter="data")
        scratch = Path(scratch)
        queue = read_queue(scratch / "queue.json")
        done = [e for e in queue if e["status"] == DONE]
        for entry in done:
            part = scratch / entry["result"]
            target = runs_out / entry["name"]
            target.mkdir(parents=True, exist_ok=True)
            for name in KEPT:
                if (part / name).is_file():
                    shutil.copy2(part / name, target / name)
        appended = _append_benchmarks(sorted((scratch / "bench").glob("*.md")), results / "performance.md")
    record = results / "campaign" / "queue.json"
    merged = read_queue(record) or queue
    finished = {e["name"] for e in done}
    for entry in merged:
        if entry["name"] in finished:
            entry["status"] = DONE
    write_json(record, merged)
    _tables(runs_out, results / "paper-mnist.md")
    return {"runs_done": sorted(finished), "benchmarks_appended": appended}


def _append_benchmarks(sections: list[Path], performance: Path) -> int:
    """Each benchmark section once: a section already in the file is not appended again."""
    text = performance.read_text() if performance.is_file() else ""
    added = 0
    for section in sections:
        body = section.read_text().strip()
        if body and body not in text:
            text += "\n\n" + body + "\n"
            added += 1
    if added:
        performance.write_text(text)
    return added


def _tables(runs: Path, paper: Path) -> None:
    """The campaign's paper tables (certlight.report, with the paper's numbers) between markers."""
    from certlight.reporting import find_result_files, markdown_table, read_records

    files = find_result_files([str(runs)]) if runs.is_dir() else []
    if not files:
        return
    records = [record for path in files for record in read_records(path, "best")]
    block = f"{BEGIN}\n## GPU campaign (DM-large)\n\n{markdown_table(records, with_paper=True)}\n{END}"
    text = paper.read_text() if paper.is_file() else ""
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    paper.write_text(text)
