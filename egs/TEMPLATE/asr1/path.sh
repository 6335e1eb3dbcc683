# Environment of a recipe (sourced by run.sh, asr.sh and local/data.sh).
# Recipes link it (egs/<corpus>/asr1/path.sh -> ../../TEMPLATE/asr1/path.sh),
# so the paths below are the recipe's, found from where it was sourced.
# shellcheck shell=bash
RECIPE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAIN_ROOT=$(cd "${RECIPE_DIR}/../../.." && pwd)

# Use the repository's virtual environment (make's .venv) when no other
# environment is active.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "${MAIN_ROOT}/.venv/bin/python3" ]; then
    export PATH="${MAIN_ROOT}/.venv/bin:${PATH}"
fi
# Debian's sctk installs sclite outside PATH.
if ! command -v sclite >/dev/null 2>&1 && [ -x /usr/lib/sctk/bin/sclite ]; then
    export PATH="${PATH}:/usr/lib/sctk/bin"
fi
# The data-directory library and the other modules of pyscripts/utils/, for
# the scripts of pyscripts/ and local/ that import them.
export PYTHONPATH="${RECIPE_DIR}/pyscripts/utils${PYTHONPATH:+:${PYTHONPATH}}"
# Byte-order sorting, as Kaldi data directories require; Python still reads
# and writes UTF-8.
export LC_ALL=C
export PYTHONIOENCODING=UTF-8
export PYTHONUTF8=1
