#!/usr/bin/env bash
# End-to-end check of the recipe: stages 1-15 on a small slice of the mini
# corpus with the one-epoch debug config, in a scratch copy of the recipe,
# then assertions on what each stage must have produced, a re-run that must
# change nothing, and a user-style transcription of a wav file through the
# packed model. The first run tests BPE tokens with the LSTM LM (stages 6-8);
# a second one, from stage 2, the main job's path: speed perturbation,
# characters, lexicon and word n-gram LM (stage 9). Takes 8-12 minutes on two
# CPU cores (more when others load them).
#
#   local/ci_e2e.sh [--workdir DIR] [--keep true] [--mini_hours 0.1] [--python PY]
set -euo pipefail

# >>> options (name=default  # help); --help lists these lines
workdir=                   # scratch copy of the recipe; empty: a new temporary directory
keep=false                 # keep the scratch directory afterwards
mini_hours=0.1             # hours of synthesized training speech
nbpe=40                    # sentencepiece vocabulary (small: the slice has little text);
                           # the e2e run tests the BPE path, the main job uses characters
python=                    # Python with ESPnet and the package; empty: from path.sh
# <<< options

recipe=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/utils/log.sh
. "${recipe}/scripts/utils/log.sh"
# shellcheck source=scripts/utils/options.sh
. "${recipe}/scripts/utils/options.sh"
parse_options "$0" "$@"
check_choice keep true false
if [ -z "${python}" ]; then
    # shellcheck source=path.sh
    python=$(. "${recipe}/path.sh" && command -v python3)
fi

if [ -z "${workdir}" ]; then
    workdir=$(mktemp -d "${TMPDIR:-/tmp}/recipe_e2e.XXXXXX")
fi
cleanup() {
    if [ "${keep}" = false ]; then rm -rf "${workdir}"; else log "kept ${workdir}"; fi
}
trap cleanup EXIT
mkdir -p "${workdir}"
cp -a "${recipe}"/{run.sh,conf,local} "${workdir}/"
# What the recipe links from egs/TEMPLATE/asr1, as copies.
cp -RL "${recipe}"/{asr.sh,path.sh,cmd.sh,scripts,pyscripts} "${workdir}/"
cd "${workdir}"

failures=0
# check CONDITION... : evaluate a test expression; count and report a failure.
check() {
    if ! test "$@"; then
        log "FAIL: test $*"
        failures=$((failures + 1))
    fi
}

asr_tag=train_asr_debug_raw_en_bpe${nbpe}
exp=exp/asr_${asr_tag}
lm_exp=exp/lm_train_lm_en_bpe${nbpe}
decode=${exp}/decode_asr_asr_model_valid.acc.ave_lm_train_lm_en_bpe${nbpe}_valid.loss.ave
test_sets=(test_sentences test_voices test_librivox)
opts=(
    --python "${python}" --mini_hours "${mini_hours}" --test_sets "${test_sets[*]}"
    --asr_config conf/train_asr_debug.yaml --token_type bpe --nbpe "${nbpe}"
    --nj 2 --inference_nj 2 --rtf_utts 3
    # The LSTM LM (stages 6-8, shallow fusion in stage 12), on the slice's
    # own text for one epoch: the pipeline is what is under test.
    --use_word_lm false --use_lm true
    --lm_train_text data/train/text --lm_args "--max_epoch 1"
    # No speed perturbation here: the second run, the main job's path, has it.
    --speed_perturb_factors ""
    # A one-epoch model babbles until the length limit: a short limit and a
    # small beam keep decoding quick; the pipeline is what is under test.
    --inference_args "--beam_size 2 --maxlenratio 0.3"
)

log "e2e: ./run.sh ${opts[*]} in ${workdir}"
start=${SECONDS}
./run.sh "${opts[@]}" 2>&1 | tee run.log >&2
log "e2e: stages 1-15 took $((SECONDS - start))s"
grep -h "Stage [0-9]* finished" run.log | sed 's/^.*(asr.sh[^)]*) /  /' >&2 || true

# Stage 1: Kaldi data directories.
for d in train dev "${test_sets[@]}"; do
    for f in wav.scp text utt2spk spk2utt; do check -s "data/${d}/${f}"; done
done
# Stage 3: 16 kHz audio and lengths; train/dev before filtering under org/.
for d in org/train org/dev train dev "${test_sets[@]}"; do
    for f in wav.scp text utt2spk spk2utt utt2num_samples .done; do check -s "dump/raw/${d}/${f}"; done
done
check "$("${python}" -c 'import soundfile, sys; print(soundfile.info(sys.argv[1]).samplerate)' \
    "$(head -n 1 dump/raw/test_librivox/wav.scp | cut -d' ' -f2)")" = 16000
# Stage 4: LM text.
check -s dump/raw/lm_train.txt
# Stage 5: tokens.
token_dir=data/en_token_list/bpe_unigram${nbpe}
check -s "${token_dir}/bpe.model"
check "$(wc -l <"${token_dir}/tokens.txt")" -eq "${nbpe}"
check "$(head -n 1 "${token_dir}/tokens.txt")" = "<blank>"
check "$(tail -n 1 "${token_dir}/tokens.txt")" = "<sos/eos>"
# Stage 10: statistics.
stats=exp/asr_stats_raw_en_bpe${nbpe}
for f in train/feats_stats.npz train/speech_shape train/text_shape.bpe valid/speech_shape valid/text_shape.bpe .done; do
    check -s "${stats}/${f}"
done
check "$(head -n 1 "${stats}/train/text_shape.bpe" | awk -F, '{ print $NF }')" = "${nbpe}"
# Stages 6-8: LM and its perplexity on the first test set.
for f in config.yaml valid.loss.ave.pth .done; do check -e "${lm_exp}/${f}"; done
check -s "${lm_exp}/perplexity_test/ppl"
# Stage 11: model.
for f in config.yaml valid.acc.ave.pth train.log .done; do check -e "${exp}/${f}"; done
# Stage 12: one hypothesis per test utterance.
for d in "${test_sets[@]}"; do
    check -f "${decode}/${d}/text"
    check "$(wc -l <"${decode}/${d}/text")" -eq "$(wc -l <"dump/raw/${d}/wav.scp")"
    for m in wer cer ter; do check -s "${decode}/${d}/score_${m}/result.txt"; done
done
# Stage 13: RESULTS.md in ESPnet's format, a numeric row per test set and metric.
check -s "${exp}/RESULTS.md"
check "$(grep -c '^|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|$' "${exp}/RESULTS.md")" -eq 3
check "$(grep -cE '^\|decode_[^|]*/test_[a-z]+(\|[0-9]+(\.[0-9])?){8}\|$' "${exp}/RESULTS.md")" -eq 9
# Stages 14-15: packed model and report.
check -s "${exp}/packed.zip"
check -s "${exp}/report.md"
check "$("${python}" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["measured"]["rtf"] > 0 and r["parameters"]["total"] > 0)' "${exp}/report.json")" = True

# Re-running stages 2-5 and 10 must find everything up to date and change nothing.
before=$(cat "${token_dir}/tokens.txt" dump/raw/train/wav.scp "${stats}/train/text_shape.bpe" | md5sum)
./run.sh "${opts[@]}" --stage 2 --stop_stage 10 >rerun.log 2>&1
check "$(grep -c 'is up to date' rerun.log)" -ge 9
check "$(cat "${token_dir}/tokens.txt" dump/raw/train/wav.scp "${stats}/train/text_shape.bpe" | md5sum)" = "${before}"

# A user's own recording: 8 kHz wav, transcribed through the packed zip.
first_audio=$(head -n 1 data/test_librivox/wav.scp | cut -d' ' -f2)
sox "${first_audio}" -r 8000 user_clip.wav
"${python}" -m espnet_shared_conformer.bin.transcribe --model "${exp}/packed.zip" --unpack_dir unpacked \
    user_clip.wav >transcript.txt
check "$(cut -f1 transcript.txt)" = user_clip.wav
check "$(awk -F'\t' '{ print NF }' transcript.txt)" -eq 2
log "e2e: transcribed: $(cat transcript.txt)"

# The main job's path, from stage 2 on the same data: speed perturbation,
# character tokens, stage 9's lexicon and word 3-gram, lexicon decoding in
# stage 12.
char_exp=exp/asr_train_asr_debug_raw_en_char_sp
word_lm_exp=exp/word_lm_en_3gram
char_decode=${char_exp}/decode_asr_asr_model_valid.acc.ave_lexicon_word_lm_en_3gram
char_opts=(
    --python "${python}" --mini_hours "${mini_hours}" --test_sets "${test_sets[*]}"
    --asr_config conf/train_asr_debug.yaml --token_type char --use_word_lm true
    --lm_train_text data/train/text --nj 2 --inference_nj 2 --rtf_utts 3
    --inference_args "--lexicon_beam_size 20"
)
log "e2e: ./run.sh --stage 2 ${char_opts[*]}"
start=${SECONDS}
./run.sh --stage 2 "${char_opts[@]}" 2>&1 | tee run_char.log >&2
log "e2e: stages 2-15 (speed perturbation, characters, lexicon) took $((SECONDS - start))s"
# Stage 2-4: three copies of every training utterance, dumped at 16 kHz.
n_train=$(wc -l <dump/raw/org/train/wav.scp)
check "$(wc -l <dump/raw/org/train_sp/wav.scp)" -eq "$((3 * n_train))"
check "$(grep -c '^sp0.9-' dump/raw/org/train_sp/wav.scp)" -eq "${n_train}"
check -s exp/asr_stats_raw_en_char_sp/train/feats_stats.npz
check "$(grep -c 'Stages 6-8: language model: skipped' run_char.log)" -eq 1
check -s "${word_lm_exp}/lexicon.txt"
check "$(head -n 1 "${word_lm_exp}/word_lm.arpa")" = ""
check "$(grep -c '^\\[123]-grams:$' "${word_lm_exp}/word_lm.arpa")" -eq 3
check -f "${word_lm_exp}/.done"
# Every hypothesised word is a lexicon word, and each utterance has a line.
for d in "${test_sets[@]}"; do
    check "$(wc -l <"${char_decode}/${d}/text")" -eq "$(wc -l <"dump/raw/${d}/wav.scp")"
    outside=$(cut -d' ' -f2- "${char_decode}/${d}/text" | tr ' ' '\n' | sed '/^$/d' |
        LC_ALL=C sort -u | LC_ALL=C comm -23 - <(cut -d' ' -f1 "${word_lm_exp}/lexicon.txt" | LC_ALL=C sort -u) |
        head -n 3)
    check -z "${outside}"
done
# WER and CER only: with character tokens TER would repeat CER.
check "$(grep -cE '^\|decode_[^|]*/test_[a-z]+(\|[0-9]+(\.[0-9])?){8}\|$' "${char_exp}/RESULTS.md")" -eq 6
# The packed zip carries the lexicon and LM, and transcribes with them.
check "$("${python}" -c 'import sys, zipfile; print(sum(n.endswith(("/lexicon.txt", "/word_lm.arpa")) for n in zipfile.ZipFile(sys.argv[1]).namelist()))' "${char_exp}/packed.zip")" -eq 2
"${python}" -m espnet_shared_conformer.bin.transcribe --model "${char_exp}/packed.zip" --unpack_dir unpacked_char \
    user_clip.wav >transcript_char.txt
check "$(cut -f1 transcript_char.txt)" = user_clip.wav
outside=$(cut -f2 transcript_char.txt | tr ' ' '\n' | sed '/^$/d' | LC_ALL=C sort -u |
    LC_ALL=C comm -23 - <(cut -d' ' -f1 "${word_lm_exp}/lexicon.txt" | LC_ALL=C sort -u))
check -z "${outside}"
log "e2e: transcribed with the lexicon: $(cat transcript_char.txt)"

if [ "${failures}" -gt 0 ]; then
    log "e2e: ${failures} checks FAILED (work dir ${workdir}; run with --keep true to inspect)"
    exit 1
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
