# Kaldi's job-range argument for scripts/utils/run_job.sh and scripts/utils/slurm_job.sh
# (sourced, not run).
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
