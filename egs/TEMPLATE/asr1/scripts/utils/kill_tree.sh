# kill_tree for asr.sh and scripts/utils/run_job.sh (sourced, not run).
# shellcheck shell=bash

# kill_tree PID...: send SIGTERM to the processes and everything they
# started, children first, so that none is left to run on by itself.
kill_tree() {
    local pid child
    for pid in "$@"; do
        for child in $(ps -o pid= --ppid "${pid}" 2>/dev/null); do
            kill_tree "${child}"
        done
        kill -TERM "${pid}" 2>/dev/null || true
    done
}
