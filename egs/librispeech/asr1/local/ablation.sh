#!/usr/bin/env bash
# The sharing ablation on the mini corpus (docs/ablation.md): every config of
# conf/ablation/ trained with each seed on the same data and budget, decoded
# twice (acoustic only: CTC prefix search without any LM, so that the rows
# compare encoders; and with the lexicon + word 3-gram of the main job), the
# offline peer recognizers decoded on the same test sets, and the tables and
# plots regenerated from the experiment directories.
#
#   local/ablation.sh                                   everything
#   local/ablation.sh --rows "b1_repeat" --seeds "1 2"  one row, two seeds
#   local/ablation.sh --stage 3                         only the report
#   local/ablation.sh --dry_run true                    print the commands
#   nohup local/ablation.sh >exp/ablation.log 2>&1 &    in the background
#
# Every data, training and decoding option is spelled out below and handed to
# asr.sh directly: the study never goes through run.sh, so a change of the
# main job's presets cannot change what the rows were trained and decoded
# with (tests/recipe/test_ablation_commands.py checks this).
#
# Stages: 1 data, tokens, lexicon + word LM and feature statistics (asr.sh
# stages 1-10), 2 per row and seed: training (asr.sh stage 11, experiment
# exp/asr_ablation_<row>_seed<S>) and both decodings with scoring (stages
# 12-13), 3 peers (local/peers.py; needs the "peers" extra) and the report
# (local/ablation_report.py). asr.sh skips what is up to date and resumes an
# interrupted training from its last checkpoint, so a stopped study is
# continued by running the same command again.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

# >>> options (name=default  # help); --help lists these lines
stage=1                    # first stage to run (1 data, 2 rows, 3 peers and report)
stop_stage=3               # last stage to run
rows=                      # configs of conf/ablation/ to run (names without .yaml); empty: all
seeds="1 2"                # training seeds of each row (initialization and data order)
dry_run=false              # print the asr.sh commands instead of running them
mini_hours=2.0             # hours of synthesized training speech (the main job's)
corpus_seed=1              # seed of the mini corpus (the main job's)
speed_perturb_factors="0.9 1.0 1.1"  # speed perturbation of the training set
test_sets="dev test_sentences test_voices test_librivox"  # sets decoded per row
acoustic_config=conf/decode_asr_acoustic.yaml  # decoding without any LM (primary score)
lexicon_config=conf/decode_asr.yaml  # lexicon + word 3-gram decoding (second column)
peers="pocketsphinx whisper"  # peer recognizers (local/peers.py --system); empty: none
nj=2                       # parallel jobs for data preparation and statistics
inference_nj=2             # parallel decoding jobs per row
doc=../../../docs/ablation.md  # generated report (tables; the reading is kept)
plot=../../../docs/ablation_wer.png  # generated plot of WER against unique parameters
# <<< options

cd "$(dirname "$0")/.."
# shellcheck source=local/options.sh
. local/options.sh
parse_options "$0" "$@"
check_int stage stop_stage nj inference_nj
check_choice dry_run true false
# shellcheck source=path.sh
. ./path.sh
for f in "${acoustic_config}" "${lexicon_config}"; do
    [ -f "${f}" ] || _die_usage "no decoding config ${f}"
done

if [ -z "${rows}" ]; then
    rows=$(for f in conf/ablation/*.yaml; do basename "${f}" .yaml; done | tr '\n' ' ')
fi
for row in ${rows}; do
    [ -f "conf/ablation/${row}.yaml" ] || _die_usage "no config conf/ablation/${row}.yaml"
done
for seed in ${seeds}; do
    [[ "${seed}" =~ ^[0-9]+$ ]] || _die_usage "--seeds takes integers, got '${seed}'"
done

# The study's data, tokens and feature statistics: the main job's, written
# out. The reference config fixes the front end and normalization that the
# shared statistics are computed with; every row must have the same.
reference_config=conf/train_asr.yaml
data_opts=(
    --local_data_opts "--corpus mini --datadir data --mini_root downloads/mini_librispeech_synth --mini_hours ${mini_hours} --seed ${corpus_seed} --librivox_dir /usr/share/pocketsphinx/test/data/librivox --asterisk_dir /usr/share/asterisk/sounds/en --asterisk_transcripts /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    --train_set train --valid_set dev --test_sets "${test_sets}"
    --speed_perturb_factors "${speed_perturb_factors}"
    --feats_type raw --audio_format flac --fs 16000
    --min_wav_duration 0.1 --max_wav_duration 20
    --token_type char --use_lm false --word_lm_order 3
    --ngpu 0 --nj "${nj}" --inference_nj "${inference_nj}"
    --lm_train_text "data/train/text data/local/other_text/text"
)

# asr STAGE STOP_STAGE OPTION...: run (or with --dry_run, print) asr.sh.
asr() {
    local cmd=(./asr.sh --stage "$1" --stop_stage "$2" "${data_opts[@]}" "${@:3}")
    if [ "${dry_run}" = true ]; then
        printf '%q ' "${cmd[@]}"
        echo
    else
        "${cmd[@]}"
    fi
}

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data, tokens, lexicon + word LM, feature statistics (asr.sh stages 1-10)"
    # The rows reuse the reference config's feature statistics: they must
    # compute the same features from the same front end.
    # shellcheck disable=SC2086  # rows is a list of names
    python3 - "${reference_config}" ${rows} <<'EOF'
import sys, yaml
ref = yaml.safe_load(open(sys.argv[1]))
for row in sys.argv[2:]:
    conf = yaml.safe_load(open(f"conf/ablation/{row}.yaml"))
    for key in ("frontend", "frontend_conf", "normalize"):
        if conf.get(key) != ref.get(key):
            sys.exit(f"conf/ablation/{row}.yaml: {key} differs from {sys.argv[1]}; "
                     "the rows share its feature statistics")
EOF
    asr 1 10 --asr_config "${reference_config}" --use_word_lm true
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    n=0
    total=$(($(wc -w <<<"${rows}") * $(wc -w <<<"${seeds}")))
    for row in ${rows}; do
        for seed in ${seeds}; do
            n=$((n + 1))
            tag=ablation_${row}_seed${seed}
            log "Stage 2: run ${n}/${total}: conf/ablation/${row}.yaml, seed ${seed} -> exp/asr_${tag}"
            row_opts=(--asr_config "conf/ablation/${row}.yaml" --asr_tag "${tag}"
                --asr_args "--seed ${seed}")
            asr 11 13 "${row_opts[@]}" --use_word_lm false \
                --inference_config "${acoustic_config}" --inference_tag decode_acoustic
            asr 12 13 "${row_opts[@]}" --use_word_lm true \
                --inference_config "${lexicon_config}" --inference_tag decode_lexicon
        done
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    data_dirs=()
    for dset in ${test_sets}; do data_dirs+=("dump/raw/${dset}"); done
    for system in ${peers}; do
        out=exp/peer_${system}
        if [ -f "${out}/system.json" ]; then
            log "Stage 3: ${out} is up to date (remove it to decode again)"
        elif [ "${dry_run}" = true ]; then
            echo "python3 local/peers.py --system ${system} --outdir ${out} ${data_dirs[*]}"
        else
            log "Stage 3: peer ${system}: ${data_dirs[*]} -> ${out}"
            mkdir -p "${out}"
            python3 local/peers.py --system "${system}" --outdir "${out}" "${data_dirs[@]}"
        fi
    done
    exps=()
    for row in ${rows}; do
        for seed in ${seeds}; do exps+=("exp/asr_ablation_${row}_seed${seed}"); done
    done
    peer_dirs=()
    for system in ${peers}; do peer_dirs+=("exp/peer_${system}"); done
    if [ "${dry_run}" = true ]; then
        echo "python3 local/ablation_report.py --exps ${exps[*]} --peers ${peer_dirs[*]}"
    else
        log "Stage 3: report: ${exps[*]} ${peer_dirs[*]} -> ${doc}, ${plot}"
        python3 local/ablation_report.py --test_sets "${test_sets}" --doc "${doc}" \
            --plot "${plot}" --exps "${exps[@]}" --peers "${peer_dirs[@]}"
    fi
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
