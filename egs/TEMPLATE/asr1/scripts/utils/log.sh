# The recipes' log line (sourced, not run): the same format as ESPnet's and as
# the Python scripts' datadir.log, so that one grep reads a whole run.
# shellcheck shell=bash

# log MESSAGE...: "<time> (<script>:<line>:<function>) MESSAGE" on stderr,
# naming where log was called.
log() {
    _log_from 1 "$*"
}

# die MESSAGE...: log "ERROR: MESSAGE" (naming where die was called) and
# exit 1.
die() {
    _log_from 1 "ERROR: $*"
    exit 1
}

# _log_from N MESSAGE: log MESSAGE as said by the caller N calls up.
_log_from() {
    local up=$(($1 + 1))
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S')" \
        "(${BASH_SOURCE[up]##*/}:${BASH_LINENO[up - 1]}:${FUNCNAME[up]}) $2" >&2
}
