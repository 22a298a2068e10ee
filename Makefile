# Two commands set everything up on a fresh machine:
#   make demo   - builds .venv, then runs the whole pipeline offline on the synthetic demo (CPU)
#   make test   - builds .venv, then runs the test suite (what CI runs)
# Override the PyTorch pair for another platform, e.g. `make test TORCH="torch==2.9.1 torchvision==0.24.1"`, and
# where it comes from, e.g. the CPU-only wheels on a machine without a GPU (PyPI's Linux wheels are CUDA builds,
# several GB): `make test TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
PYTHON ?= python3
TORCH ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
VENV := .venv
# a new pyproject.toml, torch pair or torch index builds the environment again
STAMP := $(VENV)/.installed-$(shell (cat pyproject.toml; echo '$(TORCH) $(TORCH_INDEX)') | sha256sum | cut -c1-12)
CORES ?= 2
# test files run in this many pytest-xdist workers (whole files each: module and session fixtures are built once
# per worker); most tests wait on `pdd` subprocesses or single-threaded start-up, so 2 workers on 2 cores cut the
# suite from ~17 to ~11 minutes
TEST_WORKERS ?= 2

.PHONY: venv test demo clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(VENV)/bin/pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES) --config profile=demo

clean-demo:
	rm -rf results/demo paper_tables/demo data/demo cache/demo
