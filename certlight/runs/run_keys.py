"""Which config keys define what a run computes: shared by the resume check and report grouping."""

from __future__ import annotations

from typing import Any

# Where things are written and how they are shown (and config bookkeeping: a dataset's
# default radii, which feed eps.*, and the one class auto-eps builds): never part of what a
# run computes.
OUTPUT_KEYS = (
    "ckpt_path",
    "allow_resume_changes",
    "data",
    "callbacks",
    "logger",
    "dataset.default_eps",
    "auto_eps._target_",
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "dataset.num_workers",
    "dataset.eval_batch_size",
    "dataset.device_resident",
    "dataset.download",
    "optimized_metric",
    "method_name",
)
# How the same numbers are computed (bound engine, hardware): the same setting, other rounding.
COMPUTATION_KEYS = ("bounds", "trainer.accelerator", "parallel_gpus")
MISSING = "<absent>"
# Configs recorded before runs kept Hydra's choice of method name only their class.
LEGACY_METHOD_NAMES = {
    "IBPModule": "ibp",
    "CrownIBPModule": "crown_ibp",
    "NaturalModule": "natural",
    "MTLIBPModule": "mtl_ibp",
    "CCIBPModule": "cc_ibp",
    "SABRModule": "sabr",
}


def method_label(config: dict) -> str:
    """The method's name as ``method=`` spelt it (a run config's ``method_name``); plain IBP or
    CROWN-IBP given Shi et al.'s initialisation or regulariser is ``fast_ibp`` /
    ``fast_crown_ibp`` (another method, not the paper's baseline)."""
    method = config["method"]
    name = config.get("method_name")
    if name is None:
        cls = str(method.get("_target_", "")).rsplit(".", 1)[-1]
        name = LEGACY_METHOD_NAMES.get(cls, cls)
    if name in ("ibp", "crown_ibp") and (method.get("init") == "ibp" or method.get("regulariser")):
        return f"fast_{name}"
    return name


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def is_under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def setting(config: dict, also_ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The flat config without output keys (and ``also_ignore``): what identifies a setting."""
    return {k: v for k, v in flatten(config).items() if not is_under(k, OUTPUT_KEYS + also_ignore)}


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Every setting key whose value differs, as ``key: (old, new)`` (absent keys as MISSING)."""
    before, after = setting(old), setting(new)
    return {
        key: (before.get(key, MISSING), after.get(key, MISSING))
        for key in sorted(before.keys() | after.keys())
        if before.get(key, MISSING) != after.get(key, MISSING)
    }
