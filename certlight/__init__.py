"""certlight: certified (verifiably robust) training with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"
