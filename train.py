"""Certified training: ``python train.py method=crown_ibp dataset=cifar10 reweight.gamma=5``
(the same as the ``certlight-train`` console script)."""

from certlight.train import main

if __name__ == "__main__":
    main()
