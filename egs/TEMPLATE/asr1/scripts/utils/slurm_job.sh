#!/usr/bin/env bash
# Run a command, or an array of jobs, as a Slurm batch job, with its output in
# a log file. It speaks the command-line interface of Kaldi's run.pl and
# slurm.pl (and of scripts/utils/run_job.sh), which asr.sh and ESPnet's launcher
# (python -m espnet2.bin.launch --cmd ...) call:
#
#   slurm_job.sh [--gpu N] [--num_threads N] [--mem M] [--name NAME]
#                [--num_nodes N] [--max_jobs_run N] [--partition P] [--time T]
#                [--sbatch_opt OPT]... [JOB=1:N] LOG COMMAND [ARG...]
#
#   --gpu N          GPUs per node (--gres=gpu:N); 0: none
#   --num_threads N  CPU cores per task (--cpus-per-task=N); default: one
#                    per GPU with --gpu, else Slurm's default
#   --mem M          memory per node (--mem=M), e.g. 16G
#   --name NAME      job name (--job-name); default: LOG's name without .JOB.log
#   --num_nodes N    nodes, one task each (--nodes=N --ntasks-per-node=1)
#   --max_jobs_run N at most N tasks of a JOB array at a time (--array=...%N)
#   --partition P    Slurm partition (--partition=P)
#   --time T         time limit (--time=T), e.g. 2-00:00:00
#   --sbatch_opt OPT any other sbatch option, as one word (--qos=high);
#                    repeatable; it comes last, so it wins over the above.
#                    sbatch's SBATCH_* environment variables work too.
# A later option wins over an earlier one, so the launcher's options win over
# those written in cmd.sh.
#
# It submits with `sbatch --wait` and returns when the job has ended. With
# JOB=1:N it submits one array job of N tasks; every "JOB" in LOG and in the
# arguments becomes the task number. The command runs without a shell, so
# arguments need no extra quoting. Slurm writes each task's output to its log,
# which starts with the command line and ends with its exit code and elapsed
# seconds, as scripts/utils/run_job.sh writes them. Exits 1 if any task failed, naming
# the failed logs; 2 on bad options; stopping it (Ctrl-C, kill) cancels the job.
#
# Multi-node training: cmd.sh calls this file as scripts/utils/slurm.pl (a link to
# it) because ESPnet's launcher picks its Slurm path by that file name. With
# --num_nodes N it then runs
#   slurm.pl --gpu G --num_threads G --num_nodes N LOG srun --export=ALL \
#       python -m ... --ngpu G --multiprocessing_distributed true --dist_launcher slurm
# so the batch job's srun starts one task per node, and ESPnet's training in
# each task reads its node rank from Slurm and starts one process per GPU.
# Under any other name the launcher runs `mpirun` instead, which the recipe
# does not support; this script refuses that with a message.
set -euo pipefail

me=$(basename "$0")

# die_usage MESSAGE: report a bad invocation and exit 2.
die_usage() {
    echo "${me}: $*" >&2
    exit 2
}

# need_count OPTION VALUE MIN: VALUE must be a whole number >= MIN.
need_count() {
    if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ]; then
        die_usage "$1 needs a whole number >= $3, got '$2'"
    fi
}

# ------------------------------------------------------------- batch task
# Slurm runs this file as the batch script (sbatch keeps a copy of it), with
# `--batch_task JOBVAR COMMAND...`: run the command as this array task, its
# output going to the log that Slurm opened for the task.
if [ "${1:-}" = --batch_task ]; then
    jobvar=$2
    shift 2
    argv=("$@")
    if [ -n "${jobvar}" ]; then
        n=${SLURM_ARRAY_TASK_ID:?"not an array task, but ${jobvar} is to be substituted"}
        for i in "${!argv[@]}"; do argv[i]=${argv[i]//${jobvar}/${n}}; done
    fi
    # srun inside a batch job no longer inherits the job's --cpus-per-task
    # (Slurm 22.05 and later read it from SRUN_CPUS_PER_TASK only): pass it on,
    # so that each training task gets the cores asked for.
    if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
        export SRUN_CPUS_PER_TASK=${SLURM_CPUS_PER_TASK}
    fi
    start=${SECONDS}
    printf '#'
    printf ' %q' "${argv[@]}"
    printf '\n# Started at %s on %s (Slurm job %s)\n' \
        "$(date)" "${HOSTNAME}" "${SLURM_JOB_ID:-?}"
    rc=0
    "${argv[@]}" || rc=$?
    printf '# Accounting: time=%d threads=%s\n' \
        "$((SECONDS - start))" "${SLURM_CPUS_PER_TASK:-1}"
    printf '# Ended (code %d) at %s, elapsed time %d seconds\n' \
        "${rc}" "$(date)" "$((SECONDS - start))"
    exit "${rc}"
fi

# ------------------------------------------------------------- submission
gpu=0
num_threads=""
mem=""
name=""
num_nodes=1
max_jobs_run=0
partition=""
time_limit=""
extra_opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        --gpu|--num_threads|--mem|--name|--num_nodes|--max_jobs_run|--partition|--time|--sbatch_opt)
            [ $# -ge 2 ] || die_usage "$1 needs a value"
            case "$1" in
                --gpu) need_count "$1" "$2" 0; gpu=$2 ;;
                --num_threads) need_count "$1" "$2" 1; num_threads=$2 ;;
                --mem) mem=$2 ;;
                --name) name=$2 ;;
                --num_nodes) need_count "$1" "$2" 1; num_nodes=$2 ;;
                --max_jobs_run) need_count "$1" "$2" 0; max_jobs_run=$2 ;;
                --partition) partition=$2 ;;
                --time) time_limit=$2 ;;
                --sbatch_opt) extra_opts+=("$2") ;;
            esac
            shift 2 ;;
        --config)
            die_usage "--config: this script reads no Kaldi slurm.conf; give --partition," \
                "--time or --sbatch_opt in cmd.sh, or set SBATCH_* environment variables" ;;
        --*)
            die_usage "unknown option $1" ;;
        *) break ;;
    esac
done

# shellcheck source=scripts/utils/job_utils.sh
. "${BASH_SOURCE[0]%/*}/job_utils.sh"
if [ $# -gt 0 ] && parse_job_range "$1"; then shift; fi
[ $# -ge 2 ] || die_usage "usage: ${me} [options] [JOB=1:N] LOG COMMAND [ARG...]"
log_pattern=$1
shift
if [ "$(basename "$1")" = mpirun ]; then
    die_usage "got an mpirun command: ESPnet's launcher takes its MPI path unless" \
        "its --cmd is named slurm.pl; set cuda_cmd to scripts/utils/slurm.pl in cmd.sh"
fi
command -v sbatch >/dev/null ||
    die_usage "sbatch not found: the Slurm back end needs Slurm's client commands" \
        "(set cmd_backend=local in cmd.sh to run on this machine)"

# log_of N: the log of task N.
log_of() {
    if [ -n "${jobvar}" ]; then echo "${log_pattern//${jobvar}/$1}"; else echo "${log_pattern}"; fi
}

if [ -z "${name}" ]; then
    name=$(basename "${log_pattern}")
    name=${name%.log}
    [ -z "${jobvar}" ] || name=${name%."${jobvar}"}
fi
# Slurm's --output names the task's log; "%" is special there ("%a": the
# array task number).
output=${log_pattern//%/%%}
[ -z "${jobvar}" ] || output=${output//${jobvar}/%a}

sbatch_args=(--parsable --wait --export=ALL "--job-name=${name}" "--output=${output}")
if [ -n "${jobvar}" ]; then
    array="--array=${first}-${last}"
    [ "${max_jobs_run}" -eq 0 ] || array+="%${max_jobs_run}"
    sbatch_args+=("${array}")
fi
[ "${gpu}" -eq 0 ] || sbatch_args+=("--gres=gpu:${gpu}")
# One core per GPU unless told: each GPU gets a training process of its own.
[ -n "${num_threads}" ] || [ "${gpu}" -eq 0 ] || num_threads=${gpu}
[ -z "${num_threads}" ] || sbatch_args+=("--cpus-per-task=${num_threads}")
[ -z "${mem}" ] || sbatch_args+=("--mem=${mem}")
[ "${num_nodes}" -eq 1 ] || sbatch_args+=("--nodes=${num_nodes}" --ntasks-per-node=1)
[ -z "${partition}" ] || sbatch_args+=("--partition=${partition}")
[ -z "${time_limit}" ] || sbatch_args+=("--time=${time_limit}")
sbatch_args+=("${extra_opts[@]}")

# Slurm creates the logs but not their directories. Old logs go first, so that
# a task that never starts cannot be taken for one that succeeded.
for ((n = first; n <= last; n++)); do
    log=$(log_of "${n}")
    mkdir -p "$(dirname "${log}")"
    rm -f "${log}"
done

# sbatch prints the job id (--parsable) at submission and then waits; it runs
# in the background so that a signal reaches the trap at once.
id_file=$(mktemp)
sbatch_pid=""
cleanup() {
    rm -f "${id_file}"
}
cancel() {
    trap - INT TERM
    local id
    id=$(cut -d';' -f1 "${id_file}" 2>/dev/null || true)
    if [ -n "${id}" ]; then
        echo "${me}: stopped; cancelling Slurm job ${id}" >&2
        scancel "${id}" || true
    fi
    [ -z "${sbatch_pid}" ] || kill -TERM "${sbatch_pid}" 2>/dev/null || true
    cleanup
    exit 130
}
trap cleanup EXIT
trap cancel INT TERM
sbatch "${sbatch_args[@]}" "${BASH_SOURCE[0]}" --batch_task "${jobvar}" "$@" >"${id_file}" &
sbatch_pid=$!
rc=0
wait "${sbatch_pid}" || rc=$?
id=$(cut -d';' -f1 "${id_file}")
if [ -z "${id}" ]; then
    echo "${me}: sbatch did not accept the job (exit code ${rc}); nothing ran" >&2
    exit 1
fi

failed=()
for ((n = first; n <= last; n++)); do
    log=$(log_of "${n}")
    # The task's footer says how it ended; a task that Slurm killed (time
    # limit, memory, scancel) or never started has none. Slurm may add its
    # own lines after the footer, so take the last footer, not the last line.
    ended=$(grep '^# Ended (code ' "${log}" 2>/dev/null | tail -n 1 || true)
    if [[ "${ended}" != "# Ended (code 0)"* ]]; then
        failed+=("${log}")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "${me}: ${#failed[@]} of $((last - first + 1)) jobs failed (Slurm job ${id});" \
        "see ${failed[*]}" >&2
    exit 1
fi
if [ "${rc}" -ne 0 ]; then
    echo "${me}: sbatch --wait exited with code ${rc} for Slurm job ${id}" >&2
    exit 1
fi
