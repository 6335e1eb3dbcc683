#!/usr/bin/env bash
# Run a command, or an array of jobs, on this machine with its output in a log
# file. It speaks the command-line interface of Kaldi's run.pl, which ESPnet's
# launcher (python -m espnet2.bin.launch --cmd ...) calls:
#
#   run_job.sh [--gpu N] [--num_threads N] [--mem M] [--name NAME]
#              [--num_nodes N] [--max_jobs_run N] [JOB=1:N] LOG COMMAND [ARG...]
#
# With JOB=1:N, N copies run in parallel (at most --max_jobs_run at a time) and
# every "JOB" in LOG and in the arguments becomes the job number. The command
# runs without a shell, so arguments need no extra quoting. Each log starts
# with the command line and ends with its exit code and elapsed seconds. Exits
# 1 if any job failed, naming the failed logs; 2 on bad options.
# shellcheck disable=SC2034  # run.pl's options below are accepted, not used
set -euo pipefail

# >>> options (name=default  # help); --help lists these lines
gpu=0                      # GPUs per job (run.pl's option; ignored here)
num_threads=1              # threads per job (run.pl's option; ignored here)
mem=                       # memory per job (run.pl's option; ignored here)
name=                      # job name (run.pl's option; ignored here)
config=                    # queue configuration (run.pl's option; ignored here)
num_nodes=1                # nodes: 1 (more need a cluster scheduler: cmd_backend=slurm)
max_jobs_run=0             # jobs of an array run at once; 0: all
# <<< options

usage() {
    echo "Usage: $0 [options] [JOB=1:N] LOG COMMAND [ARG...]"
    echo "Options:"
    print_options "$0"
}

utils=${BASH_SOURCE[0]%/*}
# shellcheck source=scripts/utils/log.sh
. "${utils}/log.sh"
# shellcheck source=scripts/utils/options.sh
. "${utils}/options.sh"
# shellcheck source=scripts/utils/job_utils.sh
. "${utils}/job_utils.sh"
OPTIONS_ARGS=true parse_options "$0" "$@"
set -- "${args[@]}"
check_int num_nodes max_jobs_run
if [ "${num_nodes}" -gt 1 ]; then
    _die_usage "runs jobs on this machine only; --num_nodes ${num_nodes} needs a cluster" \
        "scheduler: set cmd_backend=slurm (cmd.sh; README.md, \"Scaling out\")"
fi
if [ $# -gt 0 ] && parse_job_range "$1"; then shift; fi
[ $# -ge 2 ] || _die_usage "expected [JOB=1:N] LOG COMMAND [ARG...]"
log_pattern=$1
shift

# Each command runs as a direct child of this runner, in the runner's own
# process group (no job control):
# - a signal to the whole group (Ctrl-C in a terminal, the terminal hanging
#   up, `kill -9 -PGID` of run.sh's group) reaches every command itself;
# - a signal to the runner alone (a scheduler, asr.sh's clean-up) is passed
#   on to each command and everything it started, by the trap below;
# - a runner killed outright (SIGKILL) cannot pass anything on, but a command
#   that asks the kernel for a signal when its parent dies is stopped too: its
#   parent is this runner. The package's training entry point asks, on Linux,
#   when its parent is the PID named here (and not, say, a user's shell).
export SHARED_CONFORMER_JOB_RUNNER=$$
declare -A job_number=() job_log=() job_start=()
failed=()

# start_job N COMMAND...: write job N's log header and start it in the background.
start_job() {
    local n=$1 log arg
    local -a argv=()
    shift
    log=${log_pattern}
    for arg in "$@"; do
        [ -n "${jobvar}" ] && arg=${arg//${jobvar}/${n}}
        argv+=("${arg}")
    done
    [ -n "${jobvar}" ] && log=${log//${jobvar}/${n}}
    mkdir -p "$(dirname "${log}")"
    {
        printf '#'
        printf ' %q' "${argv[@]}"
        printf '\n# Started at %s\n' "$(date)"
    } >"${log}"
    "${argv[@]}" >>"${log}" 2>&1 &
    job_number[$!]=${n}
    job_log[$!]=${log}
    job_start[$!]=${SECONDS}
}

# reap_job: wait for the next job to end and close its log.
reap_job() {
    local pid rc=0 log elapsed
    wait -n -p pid || rc=$?
    log=${job_log[${pid}]}
    elapsed=$((SECONDS - job_start[${pid}]))
    {
        printf '# Accounting: time=%d threads=1\n' "${elapsed}"
        printf '# Ended (code %d) at %s, elapsed time %d seconds\n' "${rc}" "$(date)" "${elapsed}"
    } >>"${log}"
    [ "${rc}" -eq 0 ] || failed+=("${job_number[${pid}]} ${log}")
    unset "job_number[${pid}]" "job_log[${pid}]" "job_start[${pid}]"
}

stop_jobs_on_signals

for ((n = first; n <= last; n++)); do
    if [ "${max_jobs_run}" -gt 0 ]; then
        while [ "${#job_log[@]}" -ge "${max_jobs_run}" ]; do reap_job; done
    fi
    start_job "${n}" "$@"
done
while [ "${#job_log[@]}" -gt 0 ]; do reap_job; done

if [ ${#failed[@]} -gt 0 ]; then
    mapfile -t failed < <(printf '%s\n' "${failed[@]}" | sort -n | cut -d' ' -f2-)
    echo "$0: ${#failed[@]} of $((last - first + 1)) jobs failed; see ${failed[*]}" >&2
    exit 1
fi
