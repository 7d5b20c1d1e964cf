"""Reading run outputs (results.json from train.py, verify.json from verify) into flat records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from certlight.errors import CertlightError
from certlight.runs import run_keys
from certlight.validate import parse_epsilon

RESULT_FILES = ("results.json", "verify.json")
# Besides the output keys (run_keys), a run may differ in these and still be the same setting:
# its seed, and how the same numbers are computed (bound engine, hardware).
_NOT_THE_SETTING = ("seed", *run_keys.COMPUTATION_KEYS)


@dataclass(frozen=True)
class Record:
    """One evaluation of one run at one eps_eval, with what was actually done."""

    path: Path
    seed: int
    group: tuple  # everything that identifies the setting except the seed
    dataset: str
    model: str
    method: str
    epochs: int | None  # epochs the run finished (None: not recorded)
    max_epochs: int
    complete: bool
    train_examples: int | None  # None: not recorded
    full_train: bool
    test_examples: int
    full_test: bool
    eps_eval: float
    eps_train: float
    reweight: str
    auto_eps: str
    clean_err: float
    verified_err: float
    setting: dict = field(default_factory=dict, compare=False)  # flat config keys, for "differs in"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def full_setting(self) -> bool:
        """Trained to the end on the whole training set and evaluated on the whole test set."""
        return self.complete and self.full_train and self.full_test


def find_result_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(p for name in RESULT_FILES for p in path.rglob(name))
            if not found:
                raise CertlightError(f"no {' or '.join(RESULT_FILES)} under {path}")
            files.extend(found)
        else:
            raise CertlightError(f"{path} does not exist")
    return files


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CertlightError(f"{path} is not valid JSON ({error.msg} at line {error.lineno})") from None
    except OSError as error:
        raise CertlightError(f"{path} could not be read: {error.strerror}") from None
    if not isinstance(data, dict):
        raise CertlightError(f"{path} holds no result object")
    return data


def _setting(config: dict, path: Path) -> dict:
    try:
        reweight = config["reweight"]
        return {
            "dataset": config["dataset"]["name"],
            "model": config["model"]["_target_"].rsplit(".", 1)[-1],
            "method": run_keys.method_label(config),
            "reweight": "off"
            if reweight.get("kind") == "none" or (reweight.get("kind") == "symmetric" and not reweight.get("gamma"))
            else f"{reweight['kind']} γ={reweight.get('gamma', '-')} α={reweight.get('alpha')}",
            "auto_eps": f"{config['auto_eps']['eps_maxoff']:g}" if config["auto_eps"]["eps_maxoff"] else "off",
            "max_epochs": int(config["trainer"]["max_epochs"]),
        }
    except (KeyError, TypeError, AttributeError) as error:
        raise CertlightError(f"{path} lacks the training config entry {error}") from None


def _done(data: dict, config: dict, verify_file: bool) -> dict:
    """Epochs finished and examples used. Files written before these were recorded: a
    results.json was only ever written by a finished run; a verify.json says nothing of its
    checkpoint's epochs, so it never counts as the full setting."""
    subset = (config.get("dataset") or {}).get("train_subset")
    if verify_file:
        epochs = data.get("epochs_completed")
        complete = bool(data.get("complete", False))
    else:
        epochs = data.get("epochs")
        complete = bool(data.get("complete", True))
    train = data.get("train_examples", subset)
    total = data.get("train_examples_total")
    full_train = subset is None if total is None or train is None else train == total
    return {"epochs": epochs, "complete": complete, "train_examples": train, "full_train": full_train}


def _verified(errors: dict, verifier: str, path: Path) -> float:
    if verifier not in errors:
        raise CertlightError(f"{path} has no verified error by {verifier!r}; it has: {', '.join(errors)}")
    return errors[verifier]


def read_records(path: Path, verifier: str = "best") -> list[Record]:
    """``verifier``: whose verified error the records carry (``best`` = any sound method)."""
    data = _load(path)
    verify_file = path.name == "verify.json"
    try:
        if verify_file:
            config = data["train_config"]
            total = data.get("test_examples_total")
            rows = [
                (
                    r["eps_eval"],
                    r["clean_err"],
                    _verified(r["verified_err"], verifier, path),
                    r["n"],
                    total is not None and r["n"] == total,
                    r,
                )
                for r in data["results"]
            ]
        else:
            config = data["config"]
            test_subset = (config.get("dataset") or {}).get("test_subset")
            errors = {"best": data["verified_err"], **data.get("verified_err_by_method", {})}
            rows = [
                (
                    data["eps_eval"],
                    data["clean_err"],
                    _verified(errors, verifier, path),
                    data.get("test_examples", test_subset),
                    test_subset is None,
                    {},
                )
            ]
    except (KeyError, TypeError) as error:
        raise CertlightError(f"{path} lacks the entry {error}") from None
    if any(row[1] is None or row[2] is None for row in rows):
        raise CertlightError(f"{path} has no errors: the run stopped before its first epoch finished")
    setting = _setting(config, path)
    done = _done(data, config, verify_file)
    eps_train = parse_epsilon(config["eps"]["train"], f"{path}: eps.train")
    flat = run_keys.setting(config, also_ignore=_NOT_THE_SETTING)
    group = (
        json.dumps(flat, sort_keys=True, default=str),
        done["epochs"],
        done["complete"],
        done["train_examples"],
        path.name,
    )
    return [
        Record(
            path,
            int(config.get("seed", 0)),
            (*group, round(float(eps), 6), tests),
            eps_eval=float(eps),
            eps_train=eps_train,
            clean_err=float(clean),
            verified_err=float(verified),
            test_examples=tests,
            full_test=full_test,
            setting=flat,
            extra=extra,
            **setting,
            **done,
        )
        for eps, clean, verified, tests, full_test, extra in rows
    ]
