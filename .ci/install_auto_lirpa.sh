#!/usr/bin/env bash
# auto_LiRPA 0.3 declares torch<1.13; install it without its pins. certlight.bounds.lirpa.compat
# supplies the few names numpy 2 / torch 2 removed. appdirs is its one runtime need we lack.
set -euo pipefail
python3 -m pip install -q --no-deps auto-lirpa==0.3 appdirs
