# certlight: common tasks. The data root is found as README "Data" says (or set CERTLIGHT_DATA).
PYTHON ?= python3

.PHONY: install test test-full format lint train-mnist bench

install:
	$(PYTHON) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PYTHON) -m pip install -e ".[dev,sweeps]"
	bash .ci/install_auto_lirpa.sh

test:             ## the fast suite (what a change should pass before every commit)
	$(PYTHON) -m pytest -m "not slow" tests

test-full:        ## everything, the multi-process and subprocess tests too (what CI runs)
	$(PYTHON) -m pytest tests

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

lint:
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m ruff check .

train-mnist:
	$(PYTHON) train.py experiment=paper_mnist_small

bench:
	$(PYTHON) bench/step_time.py --out results/performance.md
	$(PYTHON) bench/epoch_time.py --out results/performance.md
	$(PYTHON) bench/fused_forward.py
