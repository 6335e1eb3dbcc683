# The name of the LibriSpeech training set (sourced by run.sh and local/data.sh,
# which must agree on it: data.sh writes data/<name>, asr.sh reads it).
# shellcheck shell=bash

# librispeech_train_set SUBSETS: print the data directory name of the train-*
# subsets among SUBSETS (space- and/or comma-separated, as --download_subsets
# takes them): train_960 for the three of LibriSpeech 960 h in any order, else
# train_ + their names without "train-", in the given order, "-" -> "_"
# ("train-clean-100,train-clean-360" -> train_clean_100_clean_360).
# Returns 1, printing nothing, when SUBSETS has no train-* subset.
librispeech_train_set() {
    local subset names=() all=" "
    local -a subsets
    read -r -a subsets <<<"${1//,/ }"
    for subset in "${subsets[@]}"; do
        case "${subset}" in
            train-*)
                names+=("${subset#train-}")
                all+="${subset} "
                ;;
        esac
    done
    [ "${#names[@]}" -gt 0 ] || return 1
    if [ "${#names[@]}" -eq 3 ] && [[ "${all}" == *" train-clean-100 "* ]] &&
        [[ "${all}" == *" train-clean-360 "* ]] && [[ "${all}" == *" train-other-500 "* ]]; then
        echo train_960
        return 0
    fi
    local joined
    joined=$(IFS=_; echo "${names[*]}")
    echo "train_${joined//-/_}"
}
