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
                    "scheduler script (Kaldi's slurm.pl or queue.pl) in cmd.sh" >&2
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

jobvar=""
first=1
last=1
if [[ $# -gt 0 && "$1" =~ ^([A-Za-z_][A-Za-z_0-9]*)=([0-9]+):([0-9]+)$ ]]; then
    jobvar=${BASH_REMATCH[1]}
    first=${BASH_REMATCH[2]}
    last=${BASH_REMATCH[3]}
    shift
    if [ "${first}" -gt "${last}" ]; then
        echo "$0: empty job range ${jobvar}=${first}:${last}" >&2
        exit 2
    fi
fi
if [ $# -lt 2 ]; then
    echo "Usage: $0 [options] [JOB=1:N] LOG COMMAND [ARG...]" >&2
    exit 2
fi
log_pattern=$1
shift

# run_one N: run the command as job N, writing its log.
run_one() {
    local n=$1 log arg start rc
    local -a argv=()
    log=${log_pattern}
    for arg in "${@:2}"; do
        [ -n "${jobvar}" ] && arg=${arg//${jobvar}/${n}}
        argv+=("${arg}")
    done
    [ -n "${jobvar}" ] && log=${log//${jobvar}/${n}}
    mkdir -p "$(dirname "${log}")"
    start=${SECONDS}
    {
        printf '#'
        printf ' %q' "${argv[@]}"
        printf '\n# Started at %s\n' "$(date)"
    } >"${log}"
    rc=0
    "${argv[@]}" >>"${log}" 2>&1 || rc=$?
    {
        printf '# Accounting: time=%d threads=1\n' "$((SECONDS - start))"
        printf '# Ended (code %d) at %s, elapsed time %d seconds\n' \
            "${rc}" "$(date)" "$((SECONDS - start))"
    } >>"${log}"
    return "${rc}"
}

# Each job gets its own process group (job control on), so that stopping this
# runner (Ctrl-C, kill) stops every job together with the command it runs;
# otherwise a killed runner would leave its commands running.
set -m
pids=()
stop_jobs() {
    trap - INT TERM
    local pid
    for pid in "${pids[@]}"; do kill -TERM -- "-${pid}" 2>/dev/null || true; done
    exit 130
}
trap stop_jobs INT TERM
for ((n = first; n <= last; n++)); do
    if [ "${max_jobs_run}" -gt 0 ]; then
        while [ "$(jobs -rp | wc -l)" -ge "${max_jobs_run}" ]; do
            wait -n || true
        done
    fi
    run_one "${n}" "$@" &
    pids+=("$!")
done

failed=()
n=${first}
for pid in "${pids[@]}"; do
    if ! wait "${pid}"; then
        log=${log_pattern}
        [ -n "${jobvar}" ] && log=${log//${jobvar}/${n}}
        failed+=("${log}")
    fi
    n=$((n + 1))
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "$0: ${#failed[@]} of $((last - first + 1)) jobs failed; see ${failed[*]}" >&2
    exit 1
fi
