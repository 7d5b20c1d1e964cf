# certlight: common tasks. The data root is found as README "Data" says (or set CERTLIGHT_DATA).
PYTHON ?= python3

.PHONY: install test train-mnist bench

install:
	$(PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -e ".[dev]"
	bash .ci/install_auto_lirpa.sh

test:
	$(PYTHON) -m pytest tests

train-mnist:
	$(PYTHON) train.py experiment=paper_mnist_small

bench:
	$(PYTHON) bench/step_time.py --out results/performance.md
	$(PYTHON) bench/epoch_time.py --out results/performance.md
	$(PYTHON) bench/fused_forward.py
