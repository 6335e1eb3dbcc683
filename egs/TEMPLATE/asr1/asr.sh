#!/usr/bin/env bash
# Generic ASR stage script: Kaldi-style data directories in, a scored and
# packed ESPnet2 model out. Stages are numbered as in ESPnet's asr.sh:
#
#    1 data preparation (local/data.sh)      10 ASR collect stats
#    2 speed perturbation                    11 ASR training
#    3 format audio / features into dump/    12 decoding
#    4 filter utterances by length; LM text  13 scoring (sclite): WER/CER/TER
#    5 token list (sentencepiece or chars)   14 packing into a zip
#  6-8 language model (--use_lm true)        15 report: size, parameters, RTF
#    9 lexicon + word n-gram LM (--use_word_lm true; decoding then searches
#      lexicon words with the CTC posteriors and the word LM)
#
# Each stage logs what it reads and writes, builds its output under a
# temporary name and moves it into place, and ends with a `.done` marker
# holding a fingerprint of its inputs and options: a re-run skips a stage
# whose fingerprint is unchanged and redoes it otherwise. Training resumes
# from its last checkpoint (ESPnet's --resume true), and refuses to when its
# config, data or options changed since it started (README.md, "Training
# resumes"). A stopped run (Ctrl-C, kill, a hang-up) stops its jobs too.
set -euo pipefail

# >>> options (name=default  # help); --help lists these lines
stage=1                    # first stage to run
stop_stage=10000           # last stage to run
nj=4                       # parallel jobs for dumping and collect-stats
inference_nj=4             # parallel decoding jobs (all test sets together)
ngpu=1                     # GPUs per node for training (0: CPU)
num_nodes=1                # nodes for training (needs a cluster cmd in cmd.sh)
dist_backend=              # DDP backend, nccl or gloo; empty: nccl with GPUs, gloo with --ngpu 0
master_addr=               # host of the rank-0 training process, multi-node (needs --master_port)
master_port=               # TCP port of the rank-0 training process; empty: multi-node ranks meet through a file under the experiment dir, one node picks a free port
gpu_inference=false        # decode on GPU
python=python3             # Python interpreter with ESPnet and this package
local_data_opts=           # options passed to local/data.sh in stage 1
datadir=data               # Kaldi-style data directories (written by stage 1)
dumpdir=dump               # formatted audio / features
expdir=exp                 # statistics, models, decoding results
train_set=                 # training data directory name under --datadir
valid_set=                 # validation data directory name
test_sets=                 # space-separated test data directory names
lang=en                    # language tag used in directory names
speed_perturb_factors=     # e.g. "0.9 1.0 1.1"; empty: no speed perturbation
feats_type=raw             # raw (16 kHz audio, model frontend) or fbank (Kaldi fbank ark/scp)
audio_format=flac          # flac or wav: format of dumped audio
fs=16000                   # sample rate everything is resampled to (Hz)
n_mels=80                  # fbank bins when --feats_type fbank
min_wav_duration=0.1       # drop training utterances shorter than this (s)
max_wav_duration=20        # drop training utterances longer than this (s)
token_type=bpe             # bpe (sentencepiece) or char
nbpe=30                    # sentencepiece vocabulary size
bpemode=unigram            # sentencepiece model type: unigram or bpe
bpe_input_sentence_size=100000000  # sentences sentencepiece samples for training
use_lm=false               # train a language model (stages 6-8) and decode with it
lm_config=conf/train_lm.yaml  # LM training config
lm_args=                   # extra arguments for LM training
lm_tag=                    # LM experiment tag; empty: made from config and tokens
lm_train_text=             # LM training text files, space-separated; empty: the training set's text
lm_dev_text=               # LM validation text; empty: validation set text
lm_test_text=              # LM perplexity text; empty: first test set text
asr_config=conf/train_asr.yaml  # ASR training config
asr_args=                  # extra arguments appended to ASR training and collect-stats
asr_tag=                   # ASR experiment tag; empty: made from config, features and tokens
inference_config=conf/decode_asr.yaml  # decoding config
inference_args=            # extra arguments for decoding
inference_tag=             # decoding directory name; empty: made from config and model
inference_asr_model=       # model file in the experiment dir to decode and pack; empty: valid.<criterion>.ave.pth of the config's best_model_criterion
inference_lm=valid.loss.ave.pth  # LM file in the LM experiment dir to decode with
use_word_lm=false          # decode constrained to a lexicon with a word n-gram LM (stage 9; char tokens)
word_lm_order=3            # order of the word n-gram LM (stage 9)
rtf_utts=20                # utterances decoded in stage 15 to measure the real-time factor
# <<< options

usage() {
    echo "Usage: $0 --train_set NAME --valid_set NAME --test_sets \"NAMES\" [--option value]..."
    echo "Stages: 1 data, 2 speed perturb, 3 dump, 4 filter, 5 tokens, 6-8 LM,"
    echo "        9 lexicon + word n-gram LM, 10 collect stats, 11 train, 12 decode,"
    echo "        13 score, 14 pack, 15 report"
    echo "Options:"
    print_options "$0"
}

cd "$(dirname "$0")"
# shellcheck source=scripts/utils/log.sh
. scripts/utils/log.sh
# shellcheck source=scripts/utils/options.sh
. scripts/utils/options.sh
parse_options "$0" "$@"
# shellcheck source=path.sh
. ./path.sh
# shellcheck source=cmd.sh
. ./cmd.sh
# shellcheck source=scripts/utils/stage_utils.sh
. scripts/utils/stage_utils.sh
# shellcheck source=scripts/utils/job_utils.sh
. scripts/utils/job_utils.sh
# shellcheck source=scripts/asr/collect_stats.sh
. scripts/asr/collect_stats.sh
# shellcheck source=scripts/asr/train_inputs.sh
. scripts/asr/train_inputs.sh

check_int stage stop_stage nj inference_nj ngpu num_nodes fs n_mels nbpe rtf_utts word_lm_order
check_choice feats_type raw fbank
check_choice audio_format flac wav
check_choice token_type bpe char
check_choice bpemode unigram bpe
check_choice use_lm true false
check_choice use_word_lm true false
check_choice gpu_inference true false
if [ -n "${dist_backend}" ]; then
    check_choice dist_backend nccl gloo
    [ "${dist_backend}" = gloo ] || [ "${ngpu}" -gt 0 ] ||
        _die_usage "--dist_backend nccl needs GPUs; with --ngpu 0 use gloo"
elif [ "${ngpu}" -gt 0 ]; then
    dist_backend=nccl
else
    dist_backend=gloo
fi
if [ -n "${master_port}" ]; then
    if ! [[ "${master_port}" =~ ^[1-9][0-9]{0,4}$ ]] || [ "${master_port}" -gt 65535 ]; then
        _die_usage "--master_port must be a TCP port number (1-65535), got '${master_port}'"
    fi
fi
if [ -n "${master_addr}" ]; then
    [[ "${master_addr}" =~ ^[A-Za-z0-9_.:]([A-Za-z0-9_.:-]*)$ ]] ||
        _die_usage "--master_addr must be a host name or IP address, got '${master_addr}'"
    [ -n "${master_port}" ] ||
        _die_usage "--master_addr needs --master_port (ESPnet's launcher uses the address only with a port)"
fi
[ -n "${train_set}" ] || _die_usage "--train_set is required"
[ -n "${valid_set}" ] || _die_usage "--valid_set is required"
[ -n "${test_sets}" ] || _die_usage "--test_sets is required"
[ "${nj}" -ge 1 ] || _die_usage "--nj must be at least 1"
[ "${inference_nj}" -ge 1 ] || _die_usage "--inference_nj must be at least 1"
[ "${word_lm_order}" -ge 2 ] || _die_usage "--word_lm_order must be at least 2 (KenLM reads bigram models and up)"
if [ "${use_word_lm}" = true ]; then
    [ "${token_type}" = char ] ||
        _die_usage "--use_word_lm true spells words in characters: it needs --token_type char, not ${token_type}"
    [ "${use_lm}" = false ] ||
        _die_usage "--use_lm true and --use_word_lm true: lexicon decoding scores with the word LM only; choose one"
fi

# ---------------------------------------------------------------- derived names
data_feats=${dumpdir}/${feats_type}
if [ -n "${speed_perturb_factors}" ]; then
    orig_train_set=${train_set}
    train_set=${train_set}_sp
    sp_tag=_sp
else
    orig_train_set=${train_set}
    sp_tag=
fi
if [ "${token_type}" = bpe ]; then
    token_tag=bpe${nbpe}
    token_dir=${datadir}/${lang}_token_list/bpe_${bpemode}${nbpe}
    bpemodel=${token_dir}/bpe.model
else
    token_tag=char
    token_dir=${datadir}/${lang}_token_list/char
    bpemodel=none
fi
token_list=${token_dir}/tokens.txt
feats_tag=${feats_type}_${lang}_${token_tag}${sp_tag}
asr_stats_dir=${expdir}/asr_stats_${feats_tag}
[ -n "${asr_tag}" ] || asr_tag=$(basename "${asr_config}" .yaml)_${feats_tag}
asr_exp=${expdir}/asr_${asr_tag}
lm_stats_dir=${expdir}/lm_stats_${lang}_${token_tag}
[ -n "${lm_tag}" ] || lm_tag=$(basename "${lm_config}" .yaml)_${lang}_${token_tag}
lm_exp=${expdir}/lm_${lm_tag}
word_lm_exp=${expdir}/word_lm_${lang}_${word_lm_order}gram
# Not the speed-perturbed copies: they would only repeat every sentence.
[ -n "${lm_train_text}" ] || lm_train_text=${datadir}/${orig_train_set}/text
[ -n "${lm_dev_text}" ] || lm_dev_text=${data_feats}/${valid_set}/text
read -r -a test_set_list <<<"${test_sets}"
if [ -z "${inference_asr_model}" ]; then
    # ESPnet averages the best epochs into <phase>.<criterion>.ave.pth: decode
    # the first validation criterion of the config (valid.acc.ave.pth for a
    # joint CTC/attention model, valid.loss.ave.pth for a CTC-only one).
    [ -f "${asr_config}" ] || _die_usage "--asr_config ${asr_config}: no such file"
    inference_asr_model=$(${python} pyscripts/utils/best_model_name.py "${asr_config}") ||
        die "cannot read best_model_criterion from ${asr_config}"
fi
[ -n "${lm_test_text}" ] || lm_test_text=${data_feats}/${test_set_list[0]}/text
if [ -z "${inference_tag}" ]; then
    inference_tag=$(basename "${inference_config}" .yaml)_asr_model_${inference_asr_model%.pth}
    if [ "${use_lm}" = true ]; then
        inference_tag+=_lm_${lm_tag}_${inference_lm%.pth}
    elif [ "${use_word_lm}" = true ]; then
        inference_tag+=_lexicon_$(basename "${word_lm_exp}")
    fi
fi
packed_model=${asr_exp}/packed.zip

if [ "${feats_type}" = raw ]; then
    audio_scp=wav.scp
    audio_type=sound
    speech_fold_length=80000
    frontend_opts=(--frontend_conf "fs=${fs}")
else
    audio_scp=feats.scp
    audio_type=kaldi_ark
    speech_fold_length=800
    frontend_opts=(--input_size "${n_mels}")
fi
text_fold_length=150

# Training and decoding run in the background while this shell waits; when
# the run is stopped, stop them too rather than leave them running on their own.
stop_jobs_on_signals

# launch_opts: the options of ESPnet's launcher (python -m espnet2.bin.launch)
# for LM and ASR training; dist_opts: the training command's own DDP options.
# The launcher hands --master_addr/--master_port to every rank (as
# --dist_master_addr/--dist_master_port) only when training spans nodes; on
# one node ESPnet's multi-GPU mode reads --dist_master_port itself (its ranks
# meet on localhost). The backend is a training option: the launcher has none.
launch_opts=(--ngpu "${ngpu}" --num_nodes "${num_nodes}")
dist_opts=(--dist_backend "${dist_backend}")
if [ -n "${master_port}" ]; then
    launch_opts+=(--master_port "${master_port}")
    [ -z "${master_addr}" ] || launch_opts+=(--master_addr "${master_addr}")
    [ "${num_nodes}" -gt 1 ] || dist_opts+=(--dist_master_port "${master_port}")
fi

# launch_training EXP JOBNAME WHAT MODEL COMMAND...: run COMMAND, a training
# entry point, through ESPnet's launcher (cuda_cmd, launch_opts) with its log
# in EXP/train.log, shown as it grows; die naming WHAT unless it succeeds and
# writes EXP/MODEL.
launch_training() {
    local exp=$1 name=$2 what=$3 model=$4
    shift 4
    # shellcheck disable=SC2086  # python may carry options
    ${python} -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${name}" \
        --log "${exp}/train.log" "${launch_opts[@]}" \
        --init_file_prefix "${exp}/.dist_init_" --multiprocessing_distributed true -- "$@" &
    wait_with_log $! "${exp}/train.log" || die "${what} failed; see ${exp}/train.log"
    [ -e "${exp}/${model}" ] || die "${what} wrote no ${exp}/${model}"
}

# token_opts: the tokenizer options every ESPnet binary here needs.
token_opts=(
    --token_type "${token_type}" --token_list "${token_list}" --bpemodel "${bpemodel}"
    --non_linguistic_symbols none --cleaner none --g2p none
)

log "$0 $(printf '%q ' "$@")"

# ---------------------------------------------------------------- stage 1
if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data preparation: local/data.sh ${local_data_opts} -> ${datadir}/"
    t0=${SECONDS}
    # local_data_opts is a shell-quoted option list, e.g. --subsets 'a b'.
    stage1_opts=()
    eval "stage1_opts=(${local_data_opts})"
    # PYTHON: the interpreter local/data.sh runs its helpers with.
    PYTHON=${python} local/data.sh "${stage1_opts[@]}"
    stage_done 1 "${t0}"
fi

# ---------------------------------------------------------------- stage 2
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    if [ -n "${speed_perturb_factors}" ]; then
        log "Stage 2: speed perturbation (${speed_perturb_factors}): ${datadir}/${orig_train_set} -> ${datadir}/${train_set}"
        t0=${SECONDS}
        src=${datadir}/${orig_train_set}
        fp=$(fingerprint "${speed_perturb_factors}" -- "${src}"/{wav.scp,text,utt2spk})
        if is_done "${datadir}/${train_set}" "${fp}"; then
            log "Stage 2: ${datadir}/${train_set} is up to date"
        else
            ${python} pyscripts/audio/perturb_speed.py --factors "${speed_perturb_factors}" \
                "${src}" "${datadir}/${train_set}"
            mark_done "${datadir}/${train_set}" "${fp}"
        fi
        stage_done 2 "${t0}"
    else
        log "Stage 2: speed perturbation: skipped (no --speed_perturb_factors)"
    fi
fi

# ---------------------------------------------------------------- stage 3
if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    log "Stage 3: format audio (${feats_type}, ${fs} Hz): ${datadir}/{${train_set},${valid_set},${test_sets// /,}} -> ${data_feats}/"
    t0=${SECONDS}
    for dset in "${train_set}" "${valid_set}" "${test_set_list[@]}"; do
        if [ "${dset}" = "${train_set}" ] || [ "${dset}" = "${valid_set}" ]; then
            out=${data_feats}/org/${dset}
        else
            out=${data_feats}/${dset}
        fi
        src=${datadir}/${dset}
        [ -d "${src}" ] || die "Stage 3: no data directory ${src} (run stage 1, or check --train_set/--valid_set/--test_sets)"
        fp=$(fingerprint "${feats_type}" "${audio_format}" "${fs}" "${n_mels}" \
            -- "${src}"/{wav.scp,text,utt2spk,spk2utt})
        if is_done "${out}" "${fp}"; then
            log "Stage 3: ${out} is up to date"
            continue
        fi
        ${python} pyscripts/audio/dump_audio.py --nj "${nj}" --fs "${fs}" --feats_type "${feats_type}" \
            --audio_format "${audio_format}" --n_mels "${n_mels}" "${src}" "${out}"
        mark_done "${out}" "${fp}"
    done
    stage_done 3 "${t0}"
fi

# ---------------------------------------------------------------- stage 4
if [ "${stage}" -le 4 ] && [ "${stop_stage}" -ge 4 ]; then
    log "Stage 4: filter by duration (${min_wav_duration}-${max_wav_duration} s): ${data_feats}/org/{${train_set},${valid_set}} -> ${data_feats}/{${train_set},${valid_set}}; LM text -> ${data_feats}/lm_train.txt"
    t0=${SECONDS}
    for dset in "${train_set}" "${valid_set}"; do
        src=${data_feats}/org/${dset}
        out=${data_feats}/${dset}
        [ -f "${src}/.done" ] || die "Stage 4: ${src} is not complete; run stage 3"
        fp=$(fingerprint "${min_wav_duration}" "${max_wav_duration}" -- "${src}/.done")
        if is_done "${out}" "${fp}"; then
            log "Stage 4: ${out} is up to date"
            continue
        fi
        ${python} pyscripts/utils/filter_utts.py --min_duration "${min_wav_duration}" \
            --max_duration "${max_wav_duration}" "${src}" "${out}"
        mark_done "${out}" "${fp}"
    done
    # The LM's training text: utterance id, then the transcript, from every
    # file of --lm_train_text; lines with only an id are dropped.
    read -r -a lm_texts <<<"${lm_train_text}"
    missing_lm_text=
    for f in "${lm_texts[@]}"; do
        [ -f "${f}" ] || missing_lm_text=${f}
    done
    if [ -z "${missing_lm_text}" ]; then
        awk 'NF > 1' "${lm_texts[@]}" >"${data_feats}/lm_train.txt.tmp"
        mv "${data_feats}/lm_train.txt.tmp" "${data_feats}/lm_train.txt"
    elif [ "${use_lm}" = true ] || [ "${use_word_lm}" = true ]; then
        die "Stage 4: no LM training text ${missing_lm_text} (see --lm_train_text)"
    else
        log "Stage 4: no ${missing_lm_text}: LM text skipped (--use_lm false, --use_word_lm false)"
    fi
    stage_done 4 "${t0}"
fi

# ---------------------------------------------------------------- stage 5
if [ "${stage}" -le 5 ] && [ "${stop_stage}" -ge 5 ]; then
    text=${data_feats}/${train_set}/text
    log "Stage 5: token list (${token_tag}): ${text} -> ${token_dir}"
    t0=${SECONDS}
    [ -f "${text}" ] || die "Stage 5: no training text ${text}; run stages 3-4"
    fp=$(fingerprint "${token_type}" "${nbpe}" "${bpemode}" "${bpe_input_sentence_size}" -- "${text}")
    if is_done "${token_dir}" "${fp}"; then
        log "Stage 5: ${token_dir} is up to date"
    else
        ${python} pyscripts/utils/make_token_list.py --token_type "${token_type}" --nbpe "${nbpe}" \
            --bpemode "${bpemode}" --input_sentence_size "${bpe_input_sentence_size}" \
            "${text}" "${token_dir}"
        mark_done "${token_dir}" "${fp}"
    fi
    log "Stage 5: $(num_lines "${token_list}") tokens in ${token_list}"
    stage_done 5 "${t0}"
fi

# ---------------------------------------------------------------- stages 6-8
if [ "${use_lm}" = true ]; then
    if [ "${stage}" -le 6 ] && [ "${stop_stage}" -ge 6 ]; then
        log "Stage 6: LM collect stats: ${data_feats}/lm_train.txt, ${lm_dev_text} -> ${lm_stats_dir}"
        t0=${SECONDS}
        # shellcheck disable=SC2086  # lm_args is a list of options
        fp=$(fingerprint "${lm_args}" -- "${lm_config}" "${data_feats}/lm_train.txt" "${lm_dev_text}" "${token_list}")
        if is_done "${lm_stats_dir}" "${fp}"; then
            log "Stage 6: ${lm_stats_dir} is up to date"
        else
            # shellcheck disable=SC2086
            collect_stats espnet2.bin.lm_train "${lm_config}" "${lm_stats_dir}" \
                "${data_feats}/lm_train.txt,text,text" "${lm_dev_text},text,text" \
                "${data_feats}/lm_train.txt" "${lm_dev_text}" ${lm_args}
            mark_done "${lm_stats_dir}" "${fp}"
        fi
        stage_done 6 "${t0}"
    fi

    if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
        log "Stage 7: LM training: ${data_feats}/lm_train.txt -> ${lm_exp}"
        t0=${SECONDS}
        [ -f "${lm_stats_dir}/.done" ] || die "Stage 7: ${lm_stats_dir} is not complete; run stage 6"
        fp=$(fingerprint "${lm_args}" -- "${lm_config}" "${lm_stats_dir}/.done")
        if is_done "${lm_exp}" "${fp}"; then
            log "Stage 7: ${lm_exp} is up to date"
        else
            mkdir -p "${lm_exp}"
            # shellcheck disable=SC2086  # lm_args is a list of options
            launch_training "${lm_exp}" lm_train "LM training" "${inference_lm}" \
                ${python} -m espnet2.bin.lm_train --use_preprocessor true "${token_opts[@]}" \
                --train_data_path_and_name_and_type "${data_feats}/lm_train.txt,text,text" \
                --valid_data_path_and_name_and_type "${lm_dev_text},text,text" \
                --train_shape_file "${lm_stats_dir}/train/text_shape.${token_type}" \
                --valid_shape_file "${lm_stats_dir}/valid/text_shape.${token_type}" \
                --fold_length "${text_fold_length}" --resume true "${dist_opts[@]}" \
                --output_dir "${lm_exp}" --config "${lm_config}" ${lm_args}
            mark_done "${lm_exp}" "${fp}"
        fi
        stage_done 7 "${t0}"
    fi

    if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 8 ]; then
        log "Stage 8: LM perplexity: ${lm_test_text} -> ${lm_exp}/perplexity_test"
        t0=${SECONDS}
        out=${lm_exp}/perplexity_test
        rm -rf "${out}.tmp"
        ${train_cmd} "${out}.tmp/lm_calc_perplexity.log" \
            ${python} -m espnet2.bin.lm_calc_perplexity --ngpu 0 \
            --data_path_and_name_and_type "${lm_test_text},text,text" \
            --train_config "${lm_exp}/config.yaml" --model_file "${lm_exp}/${inference_lm}" \
            --output_dir "${out}.tmp" ||
            die "perplexity failed; see ${out}.tmp/lm_calc_perplexity.log"
        replace_dir "${out}.tmp" "${out}"
        log "Stage 8: test perplexity: $(cat "${out}/ppl")"
        stage_done 8 "${t0}"
    fi
else
    if [ "${stage}" -le 8 ] && [ "${stop_stage}" -ge 6 ]; then
        log "Stages 6-8: language model: skipped (--use_lm false)"
    fi
fi

# ---------------------------------------------------------------- stage 9
if [ "${use_word_lm}" = true ]; then
    if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
        log "Stage 9: lexicon and word ${word_lm_order}-gram LM: ${data_feats}/lm_train.txt, ${token_list} -> ${word_lm_exp}/{lexicon.txt,word_lm.arpa}"
        t0=${SECONDS}
        [ -f "${data_feats}/lm_train.txt" ] || die "Stage 9: no ${data_feats}/lm_train.txt; run stage 4"
        [ -f "${token_dir}/.done" ] || die "Stage 9: ${token_dir} is not complete; run stage 5"
        fp=$(fingerprint "${word_lm_order}" -- "${data_feats}/lm_train.txt" "${token_list}")
        if is_done "${word_lm_exp}" "${fp}"; then
            log "Stage 9: ${word_lm_exp} is up to date"
        else
            rm -rf "${word_lm_exp}.tmp"
            mkdir -p "${word_lm_exp}.tmp"
            ${python} -m espnet_shared_conformer.lexicon --text "${data_feats}/lm_train.txt" \
                --token_list "${token_list}" --lexicon "${word_lm_exp}.tmp/lexicon.txt"
            ${python} -m espnet_shared_conformer.ngram --text "${data_feats}/lm_train.txt" \
                --order "${word_lm_order}" --arpa "${word_lm_exp}.tmp/word_lm.arpa"
            replace_dir "${word_lm_exp}.tmp" "${word_lm_exp}"
            mark_done "${word_lm_exp}" "${fp}"
        fi
        stage_done 9 "${t0}"
    fi
else
    if [ "${stage}" -le 9 ] && [ "${stop_stage}" -ge 9 ]; then
        log "Stage 9: lexicon and word LM: skipped (--use_word_lm false)"
    fi
fi

# ---------------------------------------------------------------- stage 10
train_data="${data_feats}/${train_set}/${audio_scp},speech,${audio_type} ${data_feats}/${train_set}/text,text,text"
valid_data="${data_feats}/${valid_set}/${audio_scp},speech,${audio_type} ${data_feats}/${valid_set}/text,text,text"
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 10 ]; then
    log "Stage 10: ASR collect stats: ${data_feats}/{${train_set},${valid_set}} -> ${asr_stats_dir}"
    t0=${SECONDS}
    for dset in "${train_set}" "${valid_set}"; do
        [ -f "${data_feats}/${dset}/.done" ] || die "Stage 10: ${data_feats}/${dset} is not complete; run stages 3-4"
    done
    [ -f "${token_dir}/.done" ] || die "Stage 10: ${token_dir} is not complete; run stage 5"
    fp=$(fingerprint "${asr_args}" "${frontend_opts[@]}" -- "${asr_config}" "${token_dir}/.done" \
        "${data_feats}/${train_set}/.done" "${data_feats}/${valid_set}/.done")
    if is_done "${asr_stats_dir}" "${fp}"; then
        log "Stage 10: ${asr_stats_dir} is up to date"
    else
        # shellcheck disable=SC2086  # asr_args is a list of options
        collect_stats espnet_shared_conformer.bin.asr_train "${asr_config}" "${asr_stats_dir}" \
            "${train_data}" "${valid_data}" \
            "${data_feats}/${train_set}/${audio_scp}" "${data_feats}/${valid_set}/${audio_scp}" \
            "${frontend_opts[@]}" --normalize none ${asr_args}
        mark_done "${asr_stats_dir}" "${fp}"
    fi
    stage_done 10 "${t0}"
fi

# ---------------------------------------------------------------- stage 11
# What a training was started from is recorded in ${asr_exp}/.train_inputs
# when it starts (so a killed run has it too): a copy of each input of the
# stage's fingerprint, and of the data and token markers behind the
# statistics. Resuming from other inputs would silently mix two experiments.
train_input_files=(
    "asr_config.yaml=${asr_config}"
    "stats.done=${asr_stats_dir}/.done"
    "train_data.done=${data_feats}/${train_set}/.done"
    "valid_data.done=${data_feats}/${valid_set}/.done"
    "tokens.done=${token_dir}/.done"
)
train_input_what=(
    "the config ${asr_config}"
    "the statistics ${asr_stats_dir} (stage 10 was redone)"
    "the training data ${data_feats}/${train_set} (stages 2-4 were redone)"
    "the validation data ${data_feats}/${valid_set} (stages 3-4 were redone)"
    "the token list ${token_dir} (stage 5 was redone)"
)

# train_options: the options of the training command that the fingerprint holds.
train_options() {
    printf -- "--asr_args '%s'\n" "${asr_args}"
    printf '%s\n' "${frontend_opts[*]}"
}

if [ "${stage}" -le 11 ] && [ "${stop_stage}" -ge 11 ]; then
    log "Stage 11: ASR training (${ngpu} GPU x ${num_nodes} node): ${data_feats}/${train_set} -> ${asr_exp}"
    t0=${SECONDS}
    [ -f "${asr_stats_dir}/.done" ] || die "Stage 11: ${asr_stats_dir} is not complete; run stage 10"
    fp=$(fingerprint "${asr_args}" "${frontend_opts[@]}" -- "${asr_config}" "${asr_stats_dir}/.done")
    if is_done "${asr_exp}" "${fp}"; then
        log "Stage 11: ${asr_exp} is up to date"
    else
        # A training still running in this directory (another run.sh, or one
        # left behind) holds its lock: stop before the launcher moves its log.
        ${python} -m espnet_shared_conformer.training --check_lock "${asr_exp}" ||
            die "Stage 11: ${asr_exp} is in use"
        check_train_inputs "${asr_exp}" "${fp}"
        mkdir -p "${asr_exp}"
        rm -f "${asr_exp}/.done"
        record_train_inputs "${asr_exp}" "${fp}"
        if [ -e "${asr_exp}/checkpoint.pth" ]; then
            log "Stage 11: resuming from ${asr_exp}/checkpoint.pth (the last completed epoch)"
        fi
        log "Stage 11: log: ${asr_exp}/train.log"
        train_opts=()
        for triple in ${train_data}; do train_opts+=(--train_data_path_and_name_and_type "${triple}"); done
        for triple in ${valid_data}; do train_opts+=(--valid_data_path_and_name_and_type "${triple}"); done
        # shellcheck disable=SC2086  # asr_args is a list of options
        launch_training "${asr_exp}" asr_train "ASR training" "${inference_asr_model}" \
            ${python} -m espnet_shared_conformer.bin.asr_train --use_preprocessor true \
            "${token_opts[@]}" "${train_opts[@]}" \
            --train_shape_file "${asr_stats_dir}/train/speech_shape" \
            --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}" \
            --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
            --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}" \
            --fold_length "${speech_fold_length}" --fold_length "${text_fold_length}" \
            --resume true --output_dir "${asr_exp}" --config "${asr_config}" \
            "${frontend_opts[@]}" --normalize global_mvn \
            --normalize_conf "stats_file=${asr_stats_dir}/train/feats_stats.npz" \
            "${dist_opts[@]}" ${asr_args}
        mark_done "${asr_exp}" "${fp}"
    fi
    stage_done 11 "${t0}"
fi

# ---------------------------------------------------------------- stage 12
if [ "${stage}" -le 12 ] && [ "${stop_stage}" -ge 12 ]; then
    log "Stage 12: decoding (${inference_nj} jobs): ${data_feats}/{${test_sets// /,}} -> ${asr_exp}/${inference_tag}"
    t0=${SECONDS}
    [ -f "${asr_exp}/.done" ] || die "Stage 12: ${asr_exp} is not trained; run stage 11"
    model=${asr_exp}/${inference_asr_model}
    [ -e "${model}" ] || die "Stage 12: no model ${model} (see --inference_asr_model)"
    lm_opts=()
    lm_done=${lm_exp}/.done
    if [ "${use_lm}" = true ]; then
        [ -f "${lm_exp}/.done" ] || die "Stage 12: ${lm_exp} is not trained; run stage 7"
        lm_opts=(--lm_train_config "${lm_exp}/config.yaml" --lm_file "${lm_exp}/${inference_lm}")
    elif [ "${use_word_lm}" = true ]; then
        [ -f "${word_lm_exp}/.done" ] || die "Stage 12: ${word_lm_exp} is not complete; run stage 9"
        lm_opts=(--lexicon_file "${word_lm_exp}/lexicon.txt" --word_lm_file "${word_lm_exp}/word_lm.arpa")
        lm_done=${word_lm_exp}/.done
    fi
    if [ "${gpu_inference}" = true ]; then _ngpu=1; else _ngpu=0; fi
    decode_root=${asr_exp}/${inference_tag}
    logdir=${decode_root}/logdir
    todo=()
    declare -A fps=()
    for dset in "${test_set_list[@]}"; do
        data=${data_feats}/${dset}
        [ -f "${data}/.done" ] || die "Stage 12: ${data} is not complete; run stage 3"
        fps[${dset}]=$(fingerprint "${inference_args}" "${lm_opts[@]}" -- "${inference_config}" \
            "${asr_exp}/.done" "${data}/.done" "${lm_done}")
        if is_done "${decode_root}/${dset}" "${fps[${dset}]}"; then
            log "Stage 12: ${decode_root}/${dset} is up to date"
        else
            todo+=("${dset}")
        fi
    done
    if [ ${#todo[@]} -gt 0 ]; then
        # One list of every utterance to decode, keys "<set>::<utterance>": a
        # decoding job spends long loading ESPnet, so a few jobs serve all
        # sets rather than a few per set.
        rm -rf "${logdir}"
        mkdir -p "${logdir}"
        for dset in "${todo[@]}"; do
            awk -v set="${dset}" '{ print set "::" $0 }' "${data_feats}/${dset}/${audio_scp}"
        done >"${logdir}/all.scp"
        total=$(num_lines "${logdir}/all.scp")
        n=$(min "${inference_nj}" "${total}")
        split_keys "${logdir}/all.scp" "${n}" "${logdir}/keys.JOB.scp"
        log "Stage 12: ${total} utterances of ${todo[*]}: ${n} jobs, logs in ${logdir}/asr_inference.*.log"
        start=${SECONDS}
        # shellcheck disable=SC2086  # inference_args is a list of options
        OMP_NUM_THREADS=1 ${decode_cmd} --gpu "${_ngpu}" JOB=1:"${n}" "${logdir}/asr_inference.JOB.log" \
            ${python} -m espnet_shared_conformer.bin.asr_inference --batch_size 1 --ngpu "${_ngpu}" \
            --data_path_and_name_and_type "${logdir}/all.scp,speech,${audio_type}" \
            --key_file "${logdir}/keys.JOB.scp" \
            --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${model}" \
            "${lm_opts[@]}" --output_dir "${logdir}/output.JOB" \
            --config "${inference_config}" ${inference_args} &
        wait_with_count $! "${logdir}/asr_inference.*.log" "${total}" "Stage 12" ||
            die "decoding failed; see ${logdir}/asr_inference.*.log"
        elapsed=$((SECONDS - start))
        for dset in "${todo[@]}"; do
            data=${data_feats}/${dset}
            dir=${decode_root}/${dset}
            rm -rf "${dir}.tmp"
            mkdir -p "${dir}.tmp"
            for f in text token token_int score; do
                for job in $(seq "${n}"); do
                    cat "${logdir}/output.${job}/1best_recog/${f}"
                done | awk -v prefix="${dset}::" 'index($0, prefix) == 1 {
                    print substr($0, length(prefix) + 1) }' | LC_ALL=C sort -k1,1 >"${dir}.tmp/${f}"
            done
            # Every utterance must have a hypothesis (possibly empty).
            missing=$(LC_ALL=C join -v1 <(cut -d' ' -f1 "${data}/${audio_scp}" | LC_ALL=C sort) \
                <(cut -d' ' -f1 "${dir}.tmp/text") | head -n 1)
            [ -z "${missing}" ] || die "Stage 12: no hypothesis for ${dset} utterance ${missing}; see ${logdir}"
            awk -v fs="${fs}" '{ s += $2 } END { printf "%.3f\n", s / fs }' "${data}/utt2num_samples" \
                >"${dir}.tmp/audio_seconds"
            replace_dir "${dir}.tmp" "${dir}"
            mark_done "${dir}" "${fps[${dset}]}"
        done
        # For the real-time factor (stage 15): this run's wall time and audio.
        {
            printf 'wall_seconds %d\njobs %d\nsets %s\n' "${elapsed}" "${n}" "${todo[*]}"
            for dset in "${todo[@]}"; do cat "${decode_root}/${dset}/audio_seconds"; done |
                awk '{ s += $1 } END { printf "audio_seconds %.3f\n", s }'
        } >"${decode_root}/decode_time.tmp"
        mv "${decode_root}/decode_time.tmp" "${decode_root}/decode_time"
    fi
    stage_done 12 "${t0}"
fi

# ---------------------------------------------------------------- stage 13
if [ "${stage}" -le 13 ] && [ "${stop_stage}" -ge 13 ]; then
    log "Stage 13: scoring (sclite): ${asr_exp}/${inference_tag}/{${test_sets// /,}} -> ${asr_exp}/RESULTS.md"
    t0=${SECONDS}
    for dset in "${test_set_list[@]}"; do
        dir=${asr_exp}/${inference_tag}/${dset}
        [ -f "${dir}/.done" ] || die "Stage 13: ${dir} is not decoded; run stage 12"
        ${python} pyscripts/utils/score_sclite.py --bpemodel "${bpemodel}" \
            --ref "${data_feats}/${dset}/text" --hyp "${dir}/text" \
            --utt2spk "${data_feats}/${dset}/utt2spk" "${dir}"
        log "Stage 13: ${dset}: $(grep -h -m1 'Sum/Avg' "${dir}/score_wer/result.txt" | tr -s ' ')"
    done
    ${python} pyscripts/utils/make_results.py "${asr_exp}" >"${asr_exp}/RESULTS.md.tmp"
    mv "${asr_exp}/RESULTS.md.tmp" "${asr_exp}/RESULTS.md"
    cat "${asr_exp}/RESULTS.md" >&2
    stage_done 13 "${t0}"
fi

# ---------------------------------------------------------------- stage 14
if [ "${stage}" -le 14 ] && [ "${stop_stage}" -ge 14 ]; then
    log "Stage 14: pack: ${asr_exp}/{config.yaml,${inference_asr_model}} -> ${packed_model}"
    t0=${SECONDS}
    [ -f "${asr_exp}/RESULTS.md" ] || die "Stage 14: no ${asr_exp}/RESULTS.md; run stage 13"
    pack_opts=(
        --asr_train_config "${asr_exp}/config.yaml"
        --asr_model_file "${asr_exp}/${inference_asr_model}"
        --option "${asr_exp}/RESULTS.md"
        --option "${asr_stats_dir}/train/feats_stats.npz"
        --option "${inference_config}"
    )
    [ "${token_type}" = bpe ] && pack_opts+=(--option "${bpemodel}")
    if [ "${use_lm}" = true ]; then
        pack_opts+=(--lm_train_config "${lm_exp}/config.yaml" --lm_file "${lm_exp}/${inference_lm}")
    elif [ "${use_word_lm}" = true ]; then
        # pyscripts/utils/packed_model.py finds them by name and decodes with them.
        pack_opts+=(--option "${word_lm_exp}/lexicon.txt" --option "${word_lm_exp}/word_lm.arpa")
    fi
    for f in "${asr_exp}" "${asr_stats_dir}" "${token_dir}"; do
        case "${f}" in
            /*) log "WARNING: ${f} is an absolute path: the zip works on this machine only" \
                "(ESPnet's unpack rewrites relative paths); use relative --expdir/--datadir" ;;
        esac
    done
    rm -f "${asr_exp}/packed.tmp.zip"
    ${python} -m espnet2.bin.pack asr "${pack_opts[@]}" --outpath "${asr_exp}/packed.tmp.zip" >/dev/null
    mv "${asr_exp}/packed.tmp.zip" "${packed_model}"
    log "Stage 14: ${packed_model} ($(du -h "${packed_model}" | cut -f1))"
    stage_done 14 "${t0}"
fi

# ---------------------------------------------------------------- stage 15
if [ "${stage}" -le 15 ] && [ "${stop_stage}" -ge 15 ]; then
    log "Stage 15: report: ${packed_model}, ${asr_exp}/${inference_tag} -> ${asr_exp}/report.md"
    t0=${SECONDS}
    [ -f "${packed_model}" ] || die "Stage 15: no ${packed_model}; run stage 14"
    ${python} pyscripts/utils/report.py --asr_exp "${asr_exp}" --model_file "${inference_asr_model}" \
        --asr_config "${asr_config}" --token_list "${token_list}" \
        --packed "${packed_model}" --decode_dir "${asr_exp}/${inference_tag}" \
        --rtf_data "${data_feats}/${test_set_list[0]}" --rtf_utts "${rtf_utts}" \
        --out "${asr_exp}/report.md"
    cat "${asr_exp}/report.md" >&2
    stage_done 15 "${t0}"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
