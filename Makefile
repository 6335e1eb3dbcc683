# Environments and checks for espnet_shared_conformer.
#
#   make test   install the Debian packages, build .venv (Python 3.12, ESPnet
#               202611) and .venv311 (Python 3.11, ESPnet 202511), run the unit
#               tests in both, the recipe tests, and the recipe end to end on a
#               small slice of the mini corpus (one epoch)
#   make demo   the same set-up, then the LibriSpeech recipe end to end on the
#               bundled mini corpus (default config)
#   make lint   ruff and shellcheck
#
# uv, not pip, installs ESPnet: pip refuses ESPnet's ci_sdr dependency (its
# metadata names a direct URL). torch and torchaudio are pinned to one minor
# version because ESPnet's ASR task imports torchaudio, which must match torch.

SHELL := /bin/bash
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PY312 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12.*/bin/python) $(shell command -v python3.12))
PY311 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.11.*/bin/python) $(shell command -v python3.11))
TORCH_PINS := "torch==2.11.*" "torchaudio==2.11.*"
PYTEST_ARGS ?=

DEBIAN_PACKAGES := $(shell grep -v '^\#' .ci/debian-packages.txt)

.PHONY: test test-312 test-311 e2e demo lint system-deps clean-venv help uv

help:
	@sed -n '3,11p' Makefile

# Installs only what is missing, through sudo when not root.
system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "Installing Debian packages:" $$missing; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

uv:
	@command -v uv >/dev/null || python3 -m pip install --quiet uv

.venv/.installed: setup.py | uv
	@test -n "$(PY312)" || { echo "Python 3.12 not found (set PY312=...)" >&2; exit 2; }
	uv venv --quiet --allow-existing -p "$(PY312)" .venv
	VIRTUAL_ENV=$(CURDIR)/.venv uv pip install --quiet "espnet==202611" $(TORCH_PINS) -e ".[test,dev]"
	touch $@

.venv311/.installed: setup.py | uv
	@test -n "$(PY311)" || { echo "Python 3.11 not found (set PY311=...)" >&2; exit 2; }
	uv venv --quiet --allow-existing -p "$(PY311)" .venv311
	VIRTUAL_ENV=$(CURDIR)/.venv311 uv pip install --quiet "espnet==202511" $(TORCH_PINS) -e ".[test]"
	touch $@

test-312: system-deps .venv/.installed
	.venv/bin/python -m pytest tests $(PYTEST_ARGS)

test-311: system-deps .venv311/.installed
	.venv311/bin/python -m pytest tests/unit $(PYTEST_ARGS)

e2e: system-deps .venv/.installed
	PATH="$(CURDIR)/.venv/bin:$$PATH" bash egs/librispeech/asr1/local/ci_e2e.sh

test: test-312 test-311 e2e

demo: system-deps .venv/.installed
	cd egs/librispeech/asr1 && PATH="$(CURDIR)/.venv/bin:$$PATH" ./run.sh

lint: .venv/.installed
	.venv/bin/ruff check espnet_shared_conformer tests benchmarks egs
	.venv/bin/ruff format --check espnet_shared_conformer tests benchmarks egs
	shellcheck egs/librispeech/asr1/*.sh egs/librispeech/asr1/local/*.sh .ci/run

clean-venv:
	rm -rf .venv .venv311
