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
# 1 if any job failed, naming the failed logs. --gpu, --mem, --name and
# --num_threads are accepted for compatibility and ignored: a cluster needs
# its own scheduler script in cmd.sh.
set -euo pipefail

max_jobs_run=0
while [ $# -gt 0 ]; do
    case "$1" in
        --num_nodes)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            if [ "$2" -gt 1 ]; then
                echo "$0: runs jobs on this machine only; --num_nodes $2 needs a cluster" \
                    "scheduler: set cmd_backend=slurm (cmd.sh; README.md, \"Scaling out\")" >&2
                exit 2
            fi
            shift 2 ;;
        --gpu|--num_threads|--mem|--name|--config)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            shift 2 ;;
        --max_jobs_run)
            [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
            max_jobs_run=$2; shift 2 ;;
        --*)
            echo "$0: unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done

# shellcheck source=scripts/utils/job_range.sh
. "${BASH_SOURCE[0]%/*}/job_range.sh"
if [ $# -gt 0 ] && parse_job_range "$1"; then shift; fi
if [ $# -lt 2 ]; then
    echo "Usage: $0 [options] [JOB=1:N] LOG COMMAND [ARG...]" >&2
    exit 2
fi
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

# shellcheck source=scripts/utils/kill_tree.sh
. "$(dirname "${BASH_SOURCE[0]}")/kill_tree.sh"

# stop_jobs SIGNAL: stop every running job, then exit as killed by SIGNAL.
stop_jobs() {
    trap - INT TERM HUP
    kill_tree "${!job_log[@]}"
    exit $((128 + $(kill -l "$1")))
}
trap 'stop_jobs INT' INT
trap 'stop_jobs TERM' TERM
trap 'stop_jobs HUP' HUP

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
