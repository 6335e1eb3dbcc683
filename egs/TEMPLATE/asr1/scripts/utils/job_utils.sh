# Running and stopping jobs (sourced, not run): asr.sh waits on its
# background training and decoding jobs with these; the job runners
# (run_job.sh, slurm_job.sh) read Kaldi's JOB=FIRST:LAST range and stop their
# jobs with them. stop_jobs_on_signals needs log (log.sh).
# shellcheck shell=bash

# parse_job_range ARG: when ARG is a job range NAME=FIRST:LAST (JOB=1:4), set
# jobvar, first and last from it and return 0; otherwise set jobvar to "" and
# first and last to 1 (a single job) and return 1. An empty range (FIRST >
# LAST) exits 2.
parse_job_range() {
    jobvar=""
    first=1
    last=1
    [[ "$1" =~ ^([A-Za-z_][A-Za-z_0-9]*)=([0-9]+):([0-9]+)$ ]] || return 1
    jobvar=${BASH_REMATCH[1]}
    first=${BASH_REMATCH[2]}
    last=${BASH_REMATCH[3]}
    if [ "${first}" -gt "${last}" ]; then
        echo "$(basename "$0"): empty job range ${jobvar}=${first}:${last}" >&2
        exit 2
    fi
}

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

# stop_jobs_on_signals: when this shell gets SIGINT, SIGTERM or SIGHUP
# (Ctrl-C, kill, or a terminal that hangs up, as a dropped SSH session
# does), stop its background jobs and everything they started, then exit as
# killed by the signal.
stop_jobs_on_signals() {
    trap '_stop_jobs INT' INT
    trap '_stop_jobs TERM' TERM
    trap '_stop_jobs HUP' HUP
}

_stop_jobs() {
    trap - INT TERM HUP
    log "Interrupted (SIG$1): stopping running jobs"
    # shellcheck disable=SC2046  # one PID per word
    kill_tree $(jobs -p)
    exit $((128 + $(kill -l "$1")))
}

# wait_with_log PID LOG: wait for PID (ESPnet's launcher), streaming the
# log lines of LOG meanwhile; return PID's exit status. The launcher first
# moves an old LOG aside; following by name from its current end shows only
# the new log, from its first line. The streaming runs in the background so
# that the shell sits in `wait`, where Ctrl-C reaches its trap at once.
wait_with_log() {
    local pid=$1 log=$2 progress status=0
    tail -n 0 -F --pid="${pid}" "${log}" 2>/dev/null |
        grep --line-buffered -E '(INFO|WARNING|ERROR|CRITICAL):|Traceback|Error' >&2 &
    progress=$!
    wait "${pid}" || status=$?
    wait "${progress}" || true
    return "${status}"
}

# wait_with_count PID LOGGLOB TOTAL LABEL: wait for PID, logging every 15 s
# how many of TOTAL utterances its decoding logs report finished.
wait_with_count() {
    local pid=$1 pattern=$2 total=$3 label=$4 ticks=0 count
    while kill -0 "${pid}" 2>/dev/null; do
        sleep 1
        ticks=$((ticks + 1))
        if [ $((ticks % 15)) -eq 0 ]; then
            # shellcheck disable=SC2086  # the pattern is a glob
            count=$(cat ${pattern} 2>/dev/null | grep -c "best hypo" || true)
            log "${label}: ${count}/${total} utterances decoded"
        fi
    done
    wait "${pid}"
}
