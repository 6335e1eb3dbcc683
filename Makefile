# Environments and checks for espnet_shared_conformer.
#
#   make test   build .venv (Python 3.12, ESPnet 202611) and .venv311
#               (Python 3.11, ESPnet 202511), then run the unit tests in both
#   make demo   build .venv and run the LibriSpeech recipe end to end on the
#               bundled mini corpus
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

.PHONY: test test-312 test-311 demo clean-venv help

help:
	@sed -n '3,7p' Makefile

uv:
	@command -v uv >/dev/null || python3 -m pip install --quiet uv

.venv/.installed: setup.py | uv
	@test -n "$(PY312)" || { echo "Python 3.12 not found (set PY312=...)" >&2; exit 2; }
	uv venv --quiet --allow-existing -p "$(PY312)" .venv
	VIRTUAL_ENV=$(CURDIR)/.venv uv pip install --quiet "espnet==202611" $(TORCH_PINS) -e ".[test]"
	touch $@

.venv311/.installed: setup.py | uv
	@test -n "$(PY311)" || { echo "Python 3.11 not found (set PY311=...)" >&2; exit 2; }
	uv venv --quiet --allow-existing -p "$(PY311)" .venv311
	VIRTUAL_ENV=$(CURDIR)/.venv311 uv pip install --quiet "espnet==202511" $(TORCH_PINS) -e ".[test]"
	touch $@

test-312: .venv/.installed
	.venv/bin/python -m pytest tests $(PYTEST_ARGS)

test-311: .venv311/.installed
	.venv311/bin/python -m pytest tests/unit $(PYTEST_ARGS)

test: test-312 test-311

demo: .venv/.installed
	cd egs/librispeech/asr1 && ./run.sh --python "$(CURDIR)/.venv/bin/python"

clean-venv:
	rm -rf .venv .venv311
