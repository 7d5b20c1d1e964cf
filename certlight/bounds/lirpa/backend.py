"""Margin bounds computed by auto_LiRPA on the very same network (it shares the parameters)."""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from certlight.bounds.spec import margin_spec

# α-CROWN is left out: auto_LiRPA 0.3 optimises its slopes only with gradients on (the bounds
# are computed under no_grad), and with them on returns its CROWN bound unoptimised.
_METHODS = {"ibp": "IBP", "crown_ibp": "CROWN-IBP", "crown": "CROWN"}
# auto_LiRPA 0.3's sparse-alpha bookkeeping trips over these networks unless it is off.
BOUND_OPTS = {
    "sparse_intermediate_bounds": False,
    "sparse_conv_intermediate_bounds": False,
    "sparse_intermediate_bounds_with_ibp": False,
    "sparse_features_alpha": False,
    "sparse_spec_alpha": False,
}


def lirpa_available() -> bool:
    return importlib.util.find_spec("auto_LiRPA") is not None


class LirpaBounds:
    """The :class:`~certlight.bounds.backends.BoundBackend` interface, via auto_LiRPA.

    Kept out of the ``nn.Module`` tree on purpose: the wrapped BoundedModule holds the same
    parameter tensors as ``net``, and registering it would save and optimise them twice.
    """

    methods = tuple(_METHODS)

    def __init__(self, net: nn.Module):
        if not lirpa_available():
            raise ValueError(
                "backend=auto_lirpa needs auto_LiRPA: pip install --no-deps auto-lirpa==0.3 appdirs (or backend=native)"
            )
        from certlight.bounds.lirpa.compat import load

        self.lirpa = load()
        self.net = net
        self.bounded = None
        self.num_classes = 0

    def _module(self, x: torch.Tensor):
        # Built on first use, on the device the data is on (Lightning moves the net after init).
        if self.bounded is None:
            # Traced in eval mode: a one-example batch cannot be normalised by its own statistics.
            example = torch.zeros_like(x[:1])
            was_training = self.net.training
            self.net.eval()
            self.bounded = self.lirpa.BoundedModule(self.net, example, device=str(x.device), bound_opts=BOUND_OPTS)
            with torch.no_grad():
                self.num_classes = self.net(example).shape[1]
            self.net.train(was_training)
            self.bounded.train(was_training)
            # Parameters are shared, buffers are copies: point the copies at the network's own
            # BatchNorm running statistics, so both update and read one set.
            own = dict(self.net.named_buffers())
            for name, buffer in self.bounded.named_buffers():
                if name in own:
                    buffer.data = own[name].data
        return self.bounded

    def clean_forward(self, x: torch.Tensor):
        """The clean logits, computed by the bounded module: in training mode its BatchNorm
        nodes record this batch's statistics there, and its bounds use them (the plain
        network's forward would leave the statistics the module was built with)."""
        # Build first: BoundedModule's constructor copies the state dict into the shared
        # parameters, which would invalidate the autograd graph of an earlier forward.
        module = self._module(x)
        module.train(self.net.training)
        return module(x), None

    def margins(self, x, lower, upper, y, method: str = "ibp", state=None) -> torch.Tensor:
        if method not in _METHODS:
            raise ValueError(f"method={method!r} is not offered by auto_LiRPA here; allowed: {', '.join(_METHODS)}")
        module = self._module(x)
        module.train(self.net.training)  # BatchNorm: batch statistics in training, running in eval
        perturbation = self.lirpa.PerturbationLpNorm(norm=float("inf"), x_L=lower, x_U=upper)
        bounded_x = self.lirpa.BoundedTensor(x, perturbation)
        spec = margin_spec(y, self.num_classes, x.dtype)
        lower_bound, _ = module.compute_bounds(x=(bounded_x,), method=_METHODS[method], C=spec, bound_upper=False)
        return lower_bound

    def mixed(self, x, lower, upper, y, beta: float, state=None) -> torch.Tensor:
        ibp = self.margins(x, lower, upper, y, "ibp")
        if beta == 0:
            return ibp
        return beta * self.margins(x, lower, upper, y, "crown_ibp") + (1 - beta) * ibp
