#!/usr/bin/env bash
# LibriSpeech ASR with the shared-weight low-rank Conformer encoder.
#
#   ./run.sh                          the bundled mini corpus, end to end on CPU
#   ./run.sh --corpus librispeech --librispeech_root /data   LibriSpeech 960 h
#   ./run.sh --stage 12 --stop_stage 13 --inference_nj 8      any asr.sh option
#
# This file holds the corpus settings; asr.sh runs the stages. Options after
# the corpus ones go to asr.sh and win over the presets below
# (./run.sh --help lists both).
set -euo pipefail

# >>> options (name=default  # help); --help lists these lines
corpus=mini                # mini (synthesized, offline, CPU-sized) or librispeech (960 h)
librispeech_root=downloads # LibriSpeech copy (ROOT/LibriSpeech/<subset>) or download target
download=true              # download LibriSpeech subsets missing under --librispeech_root
download_subsets="train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other"  # LibriSpeech subsets
mini_root=downloads/mini_librispeech_synth  # where the mini corpus is synthesized
mini_hours=2.0             # hours of synthesized training speech (mini)
seed=1                     # seed of the mini corpus
librivox_dir=/usr/share/pocketsphinx/test/data/librivox  # real LibriVox clips for test_librivox (mini)
asterisk_dir=/usr/share/asterisk/sounds/en  # real 8 kHz prompts for test_asterisk (mini; skipped when absent)
asterisk_transcripts=/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz  # their transcripts
# <<< options

usage() {
    echo "Usage: $0 [--corpus mini|librispeech] [corpus options] [asr.sh options]"
    echo "Corpus options:"
    print_options "$0"
    echo
    ./asr.sh --help | sed 1,3d | sed 's/^Options:/asr.sh options (override the corpus presets):/'
}

cd "$(dirname "$0")"
# shellcheck source=scripts/utils/options.sh
. scripts/utils/options.sh
# shellcheck source=local/train_set_name.sh
. local/train_set_name.sh
OPTIONS_PASSTHROUGH=true parse_options "$0" "$@"
check_choice corpus mini librispeech
check_choice download true false

# data_opt NAME VALUE: append a quoted option for local/data.sh.
local_data_opts="--corpus ${corpus} --datadir data"
data_opt() {
    local_data_opts+=" --$1 $(printf '%q' "$2")"
}
case "${corpus}" in
    mini)
        data_opt mini_root "${mini_root}"
        data_opt mini_hours "${mini_hours}"
        data_opt seed "${seed}"
        data_opt librivox_dir "${librivox_dir}"
        data_opt asterisk_dir "${asterisk_dir}"
        data_opt asterisk_transcripts "${asterisk_transcripts}"
        # test_asterisk (468 telephone prompts, when Debian's asterisk sound
        # packages are there) is prepared in stage 1 but not decoded by
        # default: it would double stage 12. Add it with --test_sets.
        test_sets="test_sentences test_voices test_librivox"
        preset=(
            --train_set train --valid_set dev
            --test_sets "${test_sets}"
            --asr_config conf/train_asr.yaml --inference_config conf/decode_asr.yaml
            --lm_config conf/train_lm.yaml
            --lm_train_text "data/train/text data/local/other_text/text"
            # Lexicon + word 3-gram decoding (stage 9); the character LSTM LM
            # of stages 6-8 instead: --use_word_lm false --use_lm true.
            --token_type char --use_word_lm true
            # Speed perturbation, at the same number of steps (the config
            # fixes 342 batches an epoch): it helps most on unseen voices
            # (README.md, "History"); stages 3 and 10 read 3x the audio.
            --speed_perturb_factors "0.9 1.0 1.1"
            --ngpu 0 --nj 2 --inference_nj 2
        )
        ;;
    librispeech)
        data_opt librispeech_root "${librispeech_root}"
        data_opt download "${download}"
        data_opt download_subsets "${download_subsets}"
        # The name local/data.sh gives the training set's directory.
        train_set=$(librispeech_train_set "${download_subsets}") ||
            _die_usage "--download_subsets '${download_subsets}' has no train-* subset"
        preset=(
            --train_set "${train_set}" --valid_set dev
            --test_sets "dev_clean dev_other test_clean test_other"
            --asr_config conf/train_asr_960h.yaml --inference_config conf/decode_asr_960h.yaml
            --lm_config conf/train_lm_960h.yaml
            --token_type bpe --nbpe 256 --bpemode unigram
            --speed_perturb_factors "0.9 1.0 1.1"
            --ngpu 1 --nj 16 --inference_nj 32
            --max_wav_duration 30
        )
        ;;
esac

# exec: asr.sh takes over this PID, so a signal sent to run.sh reaches the
# trap that stops asr.sh's running jobs (training included).
exec ./asr.sh --local_data_opts "${local_data_opts}" "${preset[@]}" "${passthrough[@]}"
