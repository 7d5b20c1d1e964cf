"""Every random number generator a training run draws from, saved and restored as one state.

With the data order a pure function of (seed, epoch), these generators are what is left to
make a resumed run bit-identical to the uninterrupted one: augmentation draws from them.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_state() -> dict:
    """Tensors and plain Python values only, so Lightning's ``weights_only`` load accepts it."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
