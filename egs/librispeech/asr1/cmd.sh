# Job runners (sourced by asr.sh), as in ESPnet's cmd.sh. Each takes Kaldi's
# run.pl interface: [--gpu N] [JOB=1:N] LOG COMMAND...
# local/run_job.sh runs everything on this machine. On a cluster, point these
# at a scheduler script with the same interface (Kaldi's slurm.pl or
# queue.pl); multi-node training (--num_nodes > 1) needs one.
# shellcheck shell=bash disable=SC2034
train_cmd="local/run_job.sh"
cuda_cmd="local/run_job.sh"
decode_cmd="local/run_job.sh"
