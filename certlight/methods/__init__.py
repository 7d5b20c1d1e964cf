"""The training methods (LightningModules), the auto-eps state they own and the fast-IBP options."""

from certlight.methods.auto_eps import AutoEpsilon
from certlight.methods.certified import CertifiedModule, CrownIBPModule, IBPModule, NaturalModule
from certlight.methods.expressive import CCIBPModule, MTLIBPModule
from certlight.methods.fast_ibp import BoundRegulariser
from certlight.methods.sabr import SABRModule
from certlight.methods.taps import STAPSModule, TAPSModule

__all__ = [
    "AutoEpsilon",
    "BoundRegulariser",
    "CCIBPModule",
    "CertifiedModule",
    "CrownIBPModule",
    "IBPModule",
    "MTLIBPModule",
    "NaturalModule",
    "SABRModule",
    "STAPSModule",
    "TAPSModule",
]
