"""LightningModules for natural, IBP and CROWN-IBP training, and the auto-eps state they own."""

from certlight.methods.auto_eps import AutoEpsilon
from certlight.methods.certified import CertifiedModule, CrownIBPModule, IBPModule, NaturalModule

__all__ = ["AutoEpsilon", "CertifiedModule", "CrownIBPModule", "IBPModule", "NaturalModule"]
