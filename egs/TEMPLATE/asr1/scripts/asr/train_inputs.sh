# The record of what a training started from, for asr.sh's stage 11
# (sourced, not run): a training that would resume from other inputs than it
# started from stops with what changed, rather than mix two experiments.
# It reads asr.sh's train_input_files and train_input_what (one entry per
# input), its train_options function and asr_config; and needs log.sh and
# stage_utils.sh.
# shellcheck shell=bash disable=SC2154  # the settings named above are asr.sh's

# record_train_inputs DIR FP: write the record of what DIR's training starts from.
record_train_inputs() {
    local dir=$1/.train_inputs entry
    rm -rf "${dir}.tmp"
    mkdir -p "${dir}.tmp"
    for entry in "${train_input_files[@]}"; do
        [ -f "${entry#*=}" ] || die "Stage 11: no ${entry#*=}; run the stages before 11"
        cp "${entry#*=}" "${dir}.tmp/${entry%%=*}"
    done
    train_options >"${dir}.tmp/options"
    printf '%s\n' "$2" >"${dir}.tmp/fingerprint"
    replace_dir "${dir}.tmp" "${dir}"
}

# check_train_inputs DIR FP: when DIR holds a (possibly unfinished) training,
# die if it was trained from other inputs than stage 11 has now, naming them.
check_train_inputs() {
    local exp=$1 fp=$2 dir=$1/.train_inputs i entry changes=()
    [ -e "${exp}/checkpoint.pth" ] || [ -f "${exp}/.done" ] || return 0
    if [ ! -f "${dir}/fingerprint" ]; then
        # Trained before the record existed: only its .done fingerprint tells.
        if [ -f "${exp}/.done" ]; then
            log "ERROR: Stage 11: the config, statistics or --asr_args changed since ${exp} was trained" \
                "(its fingerprint differs; it has no record of which input)."
            die "Stage 11: to start afresh, remove ${exp} (rm -r ${exp}) or set --asr_tag to train into another directory"
        fi
        log "WARNING: ${exp} has a checkpoint but no record of its inputs: resuming it unchecked"
        return 0
    fi
    for i in "${!train_input_files[@]}"; do
        entry=${train_input_files[i]}
        cmp -s "${dir}/${entry%%=*}" "${entry#*=}" 2>/dev/null || changes+=("${train_input_what[i]}")
    done
    if ! train_options | cmp -s "${dir}/options" -; then
        changes+=("the options: was $(paste -sd' ' "${dir}/options"), now $(train_options | paste -sd' ' -)")
    fi
    [ ${#changes[@]} -gt 0 ] || [ "$(cat "${dir}/fingerprint")" = "${fp}" ] ||
        changes+=("the fingerprint of its inputs")
    [ ${#changes[@]} -gt 0 ] || return 0
    log "ERROR: Stage 11: ${exp} was trained from other inputs than stage 11 has now;" \
        "changed since its training started:"
    for entry in "${changes[@]}"; do log "  - ${entry}"; done
    if [[ " ${changes[*]} " == *" the config "* ]]; then
        log "  config it was trained with: ${dir}/asr_config.yaml; diff -u ${dir}/asr_config.yaml ${asr_config}"
    fi
    die "Stage 11: to start afresh, remove ${exp} (rm -r ${exp}) or set --asr_tag to train into another directory;" \
        "to resume it, restore the inputs it was trained with"
}
