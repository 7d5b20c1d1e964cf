"""Reading run outputs (results.json from train.py, verify.json from verify) into flat records."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from certlight.config import parse_epsilon
from certlight.errors import CertlightError

RESULT_FILES = ("results.json", "verify.json")
_METHOD_NAMES = {"IBPModule": "ibp", "CrownIBPModule": "crown_ibp", "NaturalModule": "natural"}


@dataclass(frozen=True)
class Record:
    """One evaluation of one run at one eps_eval."""

    path: Path
    seed: int
    group: tuple  # everything that identifies the setting except the seed
    dataset: str
    model: str
    method: str
    epochs: int
    eps_eval: float
    eps_train: float
    reweight: str
    auto_eps: str
    clean_err: float
    verified_err: float
    extra: dict = field(default_factory=dict, compare=False)


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
        method = config["method"]["_target_"].rsplit(".", 1)[-1]
        reweight = config["reweight"]
        return {
            "dataset": config["dataset"]["name"],
            "model": config["model"]["_target_"].rsplit(".", 1)[-1],
            "method": _METHOD_NAMES.get(method, method),
            "reweight": "off" if reweight.get("kind") == "none" or (reweight.get("kind") == "symmetric" and not reweight.get("gamma")) else f"{reweight['kind']} γ={reweight.get('gamma', '-')} α={reweight.get('alpha')}",
            "auto_eps": f"{config['auto_eps']['eps_maxoff']:g}" if config["auto_eps"]["eps_maxoff"] else "off",
            "epochs": int(config["trainer"]["max_epochs"]),
        }
    except (KeyError, TypeError, AttributeError) as error:
        raise CertlightError(f"{path} lacks the training config entry {error}") from None


# What a run may differ in and still be the same setting: the seed, where files live, and how
# the same numbers are computed (bound engine, data path, hardware, logging). Runs made before
# such an option existed then still pool with runs made after.
_NOT_THE_SETTING = (
    "seed", "ckpt_path", "data", "callbacks", "logger", "bounds",
    "trainer.default_root_dir", "trainer.accelerator", "trainer.log_every_n_steps",
    "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "dataset.device_resident", "dataset.num_workers", "dataset.eval_batch_size",
)


def _group_key(config: dict) -> tuple:
    """The whole config minus what does not define the setting, as a hashable key."""
    pruned = json.loads(json.dumps(config))
    for key in _NOT_THE_SETTING:
        node, *rest = key.split(".")
        if rest and isinstance(pruned.get(node), dict):
            pruned[node].pop(rest[0], None)
        elif not rest:
            pruned.pop(node, None)
    return (json.dumps(pruned, sort_keys=True),)


def read_records(path: Path) -> list[Record]:
    data = _load(path)
    try:
        if path.name == "verify.json":
            config = data["train_config"]
            rows = [(r["eps_eval"], r["clean_err"], r["verified_err"]["best"], r) for r in data["results"]]
        else:
            config = data["config"]
            rows = [(data["eps_eval"], data["clean_err"], data["verified_err"], {})]
    except (KeyError, TypeError) as error:
        raise CertlightError(f"{path} lacks the entry {error}") from None
    setting = _setting(config, path)
    eps_train = parse_epsilon(config["eps"]["train"], f"{path}: eps.train")
    group = _group_key(config)
    return [
        Record(path, int(config.get("seed", 0)), (*group, round(float(eps), 6), path.name), eps_eval=float(eps), eps_train=eps_train, clean_err=float(clean), verified_err=float(verified), extra=extra, **setting)
        for eps, clean, verified, extra in rows
    ]
