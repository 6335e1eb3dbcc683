#!/usr/bin/env bash
# Stage 1 of the recipe: raw speech -> Kaldi-style data directories.
#
#   --corpus mini         synthesize the mini corpus (LibriSpeech layout), then
#                         ${datadir}/{train,dev,test_sentences,test_voices},
#                         plus the real clips ${datadir}/test_librivox (and
#                         ${datadir}/test_asterisk when its package is there)
#                         and the LM text ${datadir}/local/other_text/text
#   --corpus librispeech  use or download LibriSpeech subsets, then
#                         ${datadir}/train_960 (or train_<subsets>),
#                         ${datadir}/{dev_clean,dev_other,test_clean,test_other}
#                         and ${datadir}/dev (all dev subsets together)
#
# Run from the recipe directory (egs/librispeech/asr1).  Safe to re-run: each
# step skips work recorded by its .done marker; every directory is written
# under a temporary name and moved into place only when complete and valid.
set -euo pipefail
SECONDS=0

# >>> options (name=default  # help); --help lists these lines
corpus=mini                         # mini (synthesized, offline) or librispeech
datadir=data                        # where the Kaldi data directories are written
librispeech_root=downloads          # LibriSpeech copy (ROOT/LibriSpeech/<subset>) or download target
download=true                       # download LibriSpeech subsets missing under librispeech_root
download_subsets="train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other"  # LibriSpeech subsets to use (space- or comma-separated)
base_url=https://www.openslr.org/resources/12  # where <subset>.tar.gz are downloaded from
md5=                                # md5sum-format file overriding the built-in archive checksums
mini_root=downloads/mini_librispeech_synth  # where the synthesized corpus is written
mini_hours=2.0                      # hours of synthesized training audio (dev/test: 10% each)
seed=1                              # seed of the mini corpus (sentences, voices, jitter)
librivox_dir=/usr/share/pocketsphinx/test/data/librivox  # pocketsphinx-testdata LibriVox clips
asterisk_dir=/usr/share/asterisk/sounds/en  # asterisk-core-sounds-en-wav prompts (optional set)
asterisk_transcripts=/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz  # their texts
nj=$(nproc 2>/dev/null || echo 1)   # parallel jobs (synthesis, audio checks)
python=${PYTHON:-python3}           # Python with soundfile and numpy (the recipe's venv)
# <<< options

usage() {
    echo "Usage: $0 [options]"
    echo "Stage 1: prepare Kaldi-style data directories under --datadir."
    echo "Options:"
    print_options "$0"
}

local_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/utils/log.sh
. "${local_dir}/../scripts/utils/log.sh"
# shellcheck source=scripts/utils/options.sh
. "${local_dir}/../scripts/utils/options.sh"
parse_options "$0" "$@"
check_choice corpus mini librispeech
check_choice download true false
[[ "${nj}" =~ ^[1-9][0-9]*$ ]] || _die_usage "--nj must be a positive integer, got '${nj}'"
# shellcheck source=path.sh
. "${local_dir}/../path.sh"
# shellcheck source=local/train_set_name.sh
. "${local_dir}/train_set_name.sh"
py() { "${python}" "$@"; }

if [ "${corpus}" = mini ]; then
    log "Stage 1 data: synthesized mini corpus (${mini_hours} h, seed ${seed}) ${mini_root} + real clips ${librivox_dir} -> ${datadir}/{train,dev,test_sentences,test_voices,test_librivox}"
    py "${local_dir}/make_mini_corpus.py" --root "${mini_root}" --hours "${mini_hours}" \
        --seed "${seed}" --nj "${nj}"
    for pair in train-synth:train dev-synth:dev test-sentences-synth:test_sentences \
                test-voices-synth:test_voices; do
        py "${local_dir}/librispeech_data_prep.py" --nj "${nj}" \
            --dst "${datadir}/${pair#*:}" "${mini_root}/${pair%%:*}"
    done
    py "${local_dir}/prepare_real_clips.py" --format sphinx --speaker librivox \
        --transcripts "${librivox_dir}/transcription" --audio_dir "${librivox_dir}" \
        --dst "${datadir}/test_librivox"
    if [ -d "${asterisk_dir}" ] && [ -f "${asterisk_transcripts}" ]; then
        py "${local_dir}/prepare_real_clips.py" --format asterisk --speaker allison \
            --transcripts "${asterisk_transcripts}" --audio_dir "${asterisk_dir}" \
            --dst "${datadir}/test_asterisk"
    else
        log "no Asterisk prompts at ${asterisk_dir} (Debian asterisk-core-sounds-en-wav): skipping ${datadir}/test_asterisk"
    fi
    # Extra LM text, as ESPnet's LibriSpeech recipe keeps librispeech-lm-norm:
    # every usable Austen sentence except the dev/test ones.
    other_text=${datadir}/local/other_text
    mkdir -p "${other_text}"
    source_md5=$(md5sum < "${mini_root}/austen-lm-norm.txt" | cut -d' ' -f1)
    if [ "$(cat "${other_text}/.done" 2>/dev/null)" != "${source_md5}" ]; then
        awk '{ printf("austen_lm_%07d %s\n", NR, $0) }' "${mini_root}/austen-lm-norm.txt" \
            > "${other_text}/.text.tmp"
        mv "${other_text}/.text.tmp" "${other_text}/text"
        echo "${source_md5}" > "${other_text}/.done"
    fi
else
    read -r -a subsets <<< "${download_subsets//,/ }"
    [ "${#subsets[@]}" -gt 0 ] || _die_usage "--download_subsets is empty"
    log "Stage 1 data: LibriSpeech ${download_subsets} in ${librispeech_root} -> ${datadir}"
    # A subset is ROOT/LibriSpeech/<subset>, or ROOT/<subset> when ROOT is the
    # LibriSpeech directory of an existing copy.
    subset_dir() {
        if [ -d "${librispeech_root}/LibriSpeech/$1" ]; then echo "${librispeech_root}/LibriSpeech/$1"
        elif [ -d "${librispeech_root}/$1" ]; then echo "${librispeech_root}/$1"
        else
            echo "$0: LibriSpeech subset $1 not found under ${librispeech_root} (use --download true)" >&2
            return 1
        fi
    }
    missing=()
    for subset in "${subsets[@]}"; do
        subset_dir "${subset}" >/dev/null 2>&1 || missing+=("${subset}")
    done
    if [ "${#missing[@]}" -gt 0 ] && "${download}"; then
        md5_opt=()
        if [ -n "${md5}" ]; then md5_opt=(--md5 "${md5}"); fi
        py "${local_dir}/download_librispeech.py" --root "${librispeech_root}" \
            --subsets "${missing[@]}" --base_url "${base_url}" "${md5_opt[@]}"
    fi
    train_dirs=(); dev_dirs=()
    for subset in "${subsets[@]}"; do
        src=$(subset_dir "${subset}")
        case "${subset}" in
            train-*) train_dirs+=("${src}") ;;
            *)
                py "${local_dir}/librispeech_data_prep.py" --nj "${nj}" \
                    --dst "${datadir}/${subset//-/_}" "${src}"
                case "${subset}" in dev-*) dev_dirs+=("${src}") ;; esac ;;
        esac
    done
    if [ "${#train_dirs[@]}" -gt 0 ]; then
        train_set=$(librispeech_train_set "${download_subsets}")
        py "${local_dir}/librispeech_data_prep.py" --nj "${nj}" \
            --dst "${datadir}/${train_set}" "${train_dirs[@]}"
    fi
    if [ "${#dev_dirs[@]}" -gt 0 ]; then
        py "${local_dir}/librispeech_data_prep.py" --nj "${nj}" --dst "${datadir}/dev" "${dev_dirs[@]}"
    fi
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
