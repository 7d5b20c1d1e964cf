"""The smallest shims that let auto_LiRPA 0.3 (2022) import and run on numpy 2 and torch 2.

Each shim only adds a name that newer numpy/torch removed, and only when it is missing, so
later auto_LiRPA releases (which no longer need them) import untouched.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types

import numpy as np


def _numpy_arraysetops() -> None:
    # numpy 2 removed numpy.lib.arraysetops; auto_LiRPA 0.3 imports `isin` from it.
    try:
        importlib.import_module("numpy.lib.arraysetops")
    except ImportError:
        shim = types.ModuleType("numpy.lib.arraysetops")
        shim.isin = np.isin
        sys.modules["numpy.lib.arraysetops"] = shim


def _onnx_set_opset_version() -> None:
    # torch 2 dropped symbolic_helper._set_opset_version; the opset now lives in GLOBALS.
    symbolic_helper = importlib.import_module("torch.onnx.symbolic_helper")

    if hasattr(symbolic_helper, "_set_opset_version"):
        return
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

    def _set_opset_version(version: int) -> None:
        GLOBALS.export_onnx_opset_version = version

    symbolic_helper._set_opset_version = _set_opset_version


def _jit_node_getitem() -> None:
    # torch 2 removed `node[name]` on TorchScript graph nodes; the typed getter is
    # named by the attribute's kind (`node.f(name)`, `node.i(name)`, `node.t(name)`, ...).
    import torch

    if not hasattr(torch._C.Node, "__getitem__"):
        torch._C.Node.__getitem__ = lambda node, name: getattr(node, node.kindOf(name))(name)


def _named_members_signature(bounded_module_class) -> None:
    # torch 2 calls Module._named_members(..., remove_duplicate=...); 0.3's override lacks it.
    original = bounded_module_class._named_members
    if "remove_duplicate" in inspect.signature(original).parameters:
        return

    def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
        return original(self, get_members_fn, prefix=prefix, recurse=recurse)

    bounded_module_class._named_members = _named_members


def load():
    """Import auto_LiRPA with the shims in place; returns the package."""
    install()
    import auto_LiRPA

    _named_members_signature(auto_LiRPA.BoundedModule)
    return auto_LiRPA


def install() -> None:
    """Apply every shim; safe to call many times."""
    _numpy_arraysetops()
    _onnx_set_opset_version()
    _jit_node_getitem()
