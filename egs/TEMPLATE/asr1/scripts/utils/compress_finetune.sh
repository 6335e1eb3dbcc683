#!/usr/bin/env bash
# Compress a trained model into a shared low-rank one and fine-tune it.
#
#   scripts/utils/compress_finetune.sh --src_exp exp/asr_train_asr_raw_en_bpe256 \
#       --compress_opts "--lowrank_rank 32 --lowrank_shared_factor in" \
#       --tag compressed_r32 --epochs 3
#
# 1. python -m espnet_shared_conformer.compress: truncated-SVD factors and
#    shared modules initialized from --src_exp's model (its per-projection
#    reconstruction errors are logged to <out>/compress.log);
# 2. the training config of the fine-tuning: --src_exp's training options
#    with the compressed encoder and --epochs epochs;
# 3. ./run.sh stages 11-13 from those weights (ESPnet's --init_param), so the
#    fine-tuned model is decoded and scored like any other, in exp/asr_<tag>.
#    With --epochs 0 the compressed model is decoded as it is (stages 12-13).
# Options after these go to run.sh (e.g. --test_sets, --inference_args).
set -euo pipefail

# >>> options (name=default  # help); --help lists these lines
src_exp=                   # trained experiment (config.yaml + --src_model); required
src_model=                 # model file in --src_exp to compress; empty: the average its config's best_model_criterion names
compress_opts="--lowrank_rank 32 --lowrank_shared_factor in"  # sharing options (python -m espnet_shared_conformer.compress --help)
tag=                       # experiment tag: exp/asr_<tag>; required
epochs=3                   # fine-tuning epochs (0: decode the compressed model as it is)
lr=0.0005                  # peak learning rate of the fine-tuning
warmup_steps=100           # its warm-up steps
# <<< options

cd "$(dirname "$0")/../.."
# shellcheck source=scripts/utils/log.sh
. scripts/utils/log.sh
# shellcheck source=scripts/utils/options.sh
. scripts/utils/options.sh
OPTIONS_PASSTHROUGH=true parse_options "$0" "$@"
check_int epochs warmup_steps
[ -n "${src_exp}" ] || _die_usage "--src_exp is required"
[ -n "${tag}" ] || _die_usage "--tag is required"
[ -f "${src_exp}/config.yaml" ] || die "no ${src_exp}/config.yaml"
# shellcheck source=path.sh
. ./path.sh
if [ -z "${src_model}" ]; then
    src_model=$(python3 pyscripts/utils/best_model_name.py "${src_exp}/config.yaml") || exit 1
fi
[ -f "${src_exp}/${src_model}" ] || die "no ${src_exp}/${src_model}"

out=exp/compress_${tag}
log "Compress: ${src_exp}/${src_model} (${compress_opts}) -> ${out}"
rm -rf "${out}.tmp"
mkdir -p "${out}.tmp"
# A failed compression leaves nothing behind (on success the directory has
# been moved into place).
trap 'rm -rf "${out}.tmp"' EXIT
# shellcheck disable=SC2086  # compress_opts is a list of options
python3 -m espnet_shared_conformer.compress --config "${src_exp}/config.yaml" \
    --model "${src_exp}/${src_model}" --out_dir "${out}.tmp" ${compress_opts} |
    tee "${out}.tmp/compress.log"

# The fine-tuning config: the source's training options (its config.yaml is
# the full resolved set), minus what asr.sh passes itself, with the compressed
# encoder, a short schedule and no best-model averaging beyond the epochs run.
python3 pyscripts/utils/finetune_config.py "${src_exp}/config.yaml" "${out}.tmp/config.yaml" \
    "${out}.tmp/train.yaml" --epochs "${epochs}" --lr "${lr}" \
    --warmup_steps "${warmup_steps}"
rm -rf "${out}"
mv "${out}.tmp" "${out}"

if [ "${epochs}" -eq 0 ]; then
    # No training: the compressed weights become the experiment's model, under
    # the name stage 12 decodes for the source's best_model_criterion.
    exp=exp/asr_${tag}
    model_name=$(python3 pyscripts/utils/best_model_name.py "${out}/train.yaml")
    log "Decode as compressed: ${out}/{config.yaml,model.pth} -> ${exp}/${model_name}"
    rm -rf "${exp}"
    mkdir -p "${exp}"
    cp "${out}/config.yaml" "${exp}/config.yaml"
    cp "${out}/model.pth" "${exp}/${model_name}"
    echo "compressed from ${src_exp}/${src_model}: ${compress_opts}" >"${exp}/.done"
    ./run.sh --stage 12 --stop_stage 13 --asr_config "${out}/train.yaml" --asr_tag "${tag}" \
        "${passthrough[@]}"
else
    log "Fine-tune: ${out}/train.yaml from ${out}/model.pth (${epochs} epochs) -> exp/asr_${tag}"
    ./run.sh --stage 11 --stop_stage 13 --asr_config "${out}/train.yaml" --asr_tag "${tag}" \
        --asr_args "--init_param ${out}/model.pth" "${passthrough[@]}"
fi
log "Successfully finished: exp/asr_${tag}/RESULTS.md"
