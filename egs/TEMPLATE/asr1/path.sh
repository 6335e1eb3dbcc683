# Environment of the recipe (sourced by run.sh and asr.sh).
# shellcheck shell=bash
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)

# Use the repository's virtual environment (make's .venv) when no other
# environment is active.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "${MAIN_ROOT}/.venv/bin/python3" ]; then
    export PATH="${MAIN_ROOT}/.venv/bin:${PATH}"
fi
# Debian's sctk installs sclite outside PATH.
if ! command -v sclite >/dev/null 2>&1 && [ -x /usr/lib/sctk/bin/sclite ]; then
    export PATH="${PATH}:/usr/lib/sctk/bin"
fi
# Byte-order sorting, as Kaldi data directories require; Python still reads
# and writes UTF-8.
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export PYTHONUTF8=1
