"""auto_LiRPA as an optional bound backend and an independent oracle for the native engine."""

from certlight.bounds.lirpa.backend import LirpaBounds, lirpa_available

__all__ = ["LirpaBounds", "lirpa_available"]
