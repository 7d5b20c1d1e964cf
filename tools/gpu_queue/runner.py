"""``python -m tools.gpu_queue run`` on the GPU machine: benchmarks once, then the queue's runs
side by side, each a ``train.py`` process; SIGTERM before the deadline (a run then writes
results.json marked interrupted and keeps its last epoch's checkpoint, which the next command's
part resumes from); finally what finished is packed into ``--out``. Every failed run is counted
in ``state.json`` and its log's last lines go into ``campaign.log``, which comes back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.gpu_queue.queue import DONE, PENDING, read_queue, write_json

FAILED = "failed"
GRACE_S = 45.0  # runs get SIGTERM this long before the deadline, to save and write results
START_MARGIN_S = 30.0  # no run is started with less time than this left
MAX_FAILURES = 2  # a run that crashes twice on its own is set aside, not retried for ever
PARALLEL_CANDIDATES = (1, 2, 4)


class Campaign:
    def __init__(
        self,
        state: Path,
        budget_s: float,
        python: str = sys.executable,
        extra_overrides: tuple[str, ...] = (),
        poll_s: float = 1.0,
    ):
        self.state, self.python, self.extra, self.poll_s = state, python, tuple(extra_overrides), poll_s
        self.deadline = time.monotonic() + budget_s
        self.queue_file = state / "queue.json"
        self.queue = read_queue(self.queue_file)
        self.env = dict(os.environ, CERTLIGHT_DATA=str((state / "data").resolve()), PYTHONUNBUFFERED="1")
        self.log_file = open(state / "campaign.log", "a")

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # --- benchmarks ------------------------------------------------------------------------
    def benchmark(self, commands: list[tuple[str, list[str]]]) -> None:
        """Each (name, argv) once per campaign, output into bench/<name>.md; marked in state.json."""
        meta = self.meta()
        bench = self.state / "bench"
        bench.mkdir(exist_ok=True)
        for name, argv in commands:
            if name in meta.setdefault("benchmarks_done", []) or self.left() < GRACE_S + START_MARGIN_S:
                continue
            self.log(f"benchmark {name}: {' '.join(argv)}")
            try:
                proc = subprocess.run(
                    [self.python, *argv],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=max(self.left() - GRACE_S, 1),
                )
                text = (
                    proc.stdout
                    if proc.returncode == 0
                    else f"failed ({proc.returncode}):\n```\n{proc.stderr[-3000:]}\n```\n"
                )
            except subprocess.TimeoutExpired:
                text = "stopped at the command's budget\n"
            (bench / f"{name}.md").write_text(text)
            meta["benchmarks_done"].append(name)
            self.write_meta(meta)

    def meta(self) -> dict:
        path = self.state / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_meta(self, meta: dict) -> None:
        write_json(self.state / "state.json", meta)

    # --- the queue ---------------------------------------------------------------------------
    def _command(self, entry: dict) -> tuple[list[str], Path]:
        run_dir = self.state / "runs" / entry["name"]
        parts = sorted((p for p in run_dir.glob("part*") if p.is_dir()), key=lambda p: int(p.name[4:]))
        resume = [
            f"ckpt_path={(p / 'checkpoints' / 'last.ckpt').resolve()}"
            for p in reversed(parts)
            if (p / "checkpoints" / "last.ckpt").is_file()
        ][:1]
        part = run_dir / f"part{len(parts)}"
        argv = [
            self.python,
            "train.py",
            *entry["overrides"],
            *self.extra,
            "++trainer.enable_progress_bar=false",
            f"hydra.run.dir={part.resolve()}",
            *resume,
        ]
        return argv, part

    def run_queue(self, parallel: int) -> int:
        """Work through the queue until the budget; returns how many runs failed."""
        self.failed = 0
        running: dict[str, tuple[subprocess.Popen, Path]] = {}
        by_name = {entry["name"]: entry for entry in self.queue}
        while self.left() > GRACE_S:
            for name, (proc, part) in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    self._finished(by_name[name], proc.returncode, part)
            todo = [e for e in self.queue if e["status"] == PENDING and e["name"] not in running]
            while todo and len(running) < parallel and self.left() > GRACE_S + START_MARGIN_S:
                entry = todo.pop(0)
                argv, part = self._command(entry)
                part.parent.mkdir(parents=True, exist_ok=True)
                self.log(
                    f"start {entry['name']} {part.name}"
                    + (" (resumed)" if any(a.startswith("ckpt_path=") for a in argv) else "")
                )
                running[entry["name"]] = (
                    subprocess.Popen(argv, env=self.env, stdout=open(f"{part}.log", "w"), stderr=subprocess.STDOUT),
                    part,
                )
            if not running:
                break
            time.sleep(self.poll_s)
        self._stop(running)
        return self.failed

    def _finished(self, entry: dict, code: int, part: Path) -> None:
        results = part / "results.json"
        if code == 0 and results.is_file() and json.loads(results.read_text()).get("complete"):
            entry["status"], entry["result"] = DONE, str(part.relative_to(self.state))
            self.log(f"done {entry['name']}")
        else:
            entry["failures"] = entry.get("failures", 0) + 1
            entry["status"] = FAILED if entry["failures"] >= MAX_FAILURES else PENDING
            self.failed += 1
            meta = self.meta()
            self.write_meta({**meta, "failed_runs": meta.get("failed_runs", 0) + 1})
            log = Path(f"{part}.log")
            reason = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else ["(no log)"]
            self.log(
                f"FAILED {entry['name']}: exited {code} ({entry['failures']} "
                f"failure(s)); last lines of {log.name}:\n    " + "\n    ".join(reason)
            )
        write_json(self.queue_file, self.queue)

    def _stop(self, running: dict) -> None:
        """SIGTERM what still runs (each keeps its last epoch's checkpoint for the next part)."""
        for name, (proc, _) in running.items():
            self.log(f"stopping {name} at the budget")
            proc.send_signal(signal.SIGTERM)
        for proc, _ in running.values():
            try:
                proc.wait(timeout=max(GRACE_S - 10, 5))
            except subprocess.TimeoutExpired:
                proc.kill()
        write_json(self.queue_file, self.queue)


def probe_parallel(campaign: Campaign, probe_overrides: list[str], steps: int) -> int | None:
    """How many runs side by side give the most training steps per second on this machine:
    for each k, k copies of one probe run of ``steps`` steps, timed to the last one's end.
    None when no probe finished (nothing to choose from)."""
    best, best_rate = None, 0.0
    for k in PARALLEL_CANDIDATES:
        if campaign.left() < 3 * (GRACE_S + START_MARGIN_S):
            break
        folder = campaign.state / "probe" / f"k{k}"
        start = time.monotonic()
        procs = [
            subprocess.Popen(
                [
                    campaign.python,
                    "train.py",
                    *probe_overrides,
                    f"++trainer.max_steps={steps}",
                    "++trainer.limit_val_batches=0",
                    "++trainer.enable_progress_bar=false",
                    f"hydra.run.dir={(folder / str(i)).resolve()}",
                ],
                env=campaign.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(k)
        ]
        codes = [proc.wait() for proc in procs]
        rate = k * steps / (time.monotonic() - start)
        campaign.log(f"probe: {k} side by side, {k * steps} steps at {rate:.1f} steps/s (exit codes {codes})")
        if all(code == 0 for code in codes) and rate > best_rate:
            best, best_rate = k, rate
    return best
