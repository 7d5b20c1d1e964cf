"""LightningModules for natural, IBP and CROWN-IBP training, and the auto-eps state they own."""

from certlight.modules.auto_eps import AutoEpsilon
from certlight.modules.certified import CertifiedModule, CrownIBPModule, IBPModule, NaturalModule

__all__ = ["AutoEpsilon", "CertifiedModule", "CrownIBPModule", "IBPModule", "NaturalModule"]
