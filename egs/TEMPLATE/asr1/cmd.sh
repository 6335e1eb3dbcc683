# Job runners (sourced by asr.sh), as in ESPnet's cmd.sh. Each takes Kaldi's
# run.pl interface: [--gpu N] [--num_threads N] [--mem M] [--name NAME]
# [--num_nodes N] [JOB=1:N] LOG COMMAND...
#   train_cmd   collect-stats and other CPU jobs
#   cuda_cmd    training, through ESPnet's launcher (python -m espnet2.bin.launch)
#   decode_cmd  decoding
#
# cmd_backend picks where they run (set it here, or in the environment:
# cmd_backend=slurm ./run.sh ...):
#   local  scripts/utils/run_job.sh: every job on this machine; one node only.
#   slurm  scripts/utils/slurm.pl: each job is a Slurm batch job (sbatch --wait),
#          JOB=1:N an array job; --gpu N asks for --gres=gpu:N. Multi-node
#          training (--num_nodes N) runs one srun task per node, each starting
#          one process per GPU. Add what your cluster needs to the lines
#          below: --partition, --time, --mem, --sbatch_opt --qos=... (see
#          scripts/utils/slurm_job.sh). It must stay named slurm.pl: ESPnet's launcher
#          takes its Slurm path by that file name.
# shellcheck shell=bash disable=SC2034
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        train_cmd="scripts/utils/run_job.sh"
        cuda_cmd="scripts/utils/run_job.sh"
        decode_cmd="scripts/utils/run_job.sh"
        ;;
    slurm)
        train_cmd="scripts/utils/slurm.pl"
        cuda_cmd="scripts/utils/slurm.pl"
        decode_cmd="scripts/utils/slurm.pl"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
        return 2
        ;;
esac
