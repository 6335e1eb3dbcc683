# ESPnet's collect-stats mode for asr.sh's stages 6 and 10 (sourced, not
# run). It reads asr.sh's settings: python, nj, train_cmd, token_opts,
# token_list and token_type; and needs log.sh and stage_utils.sh.
# shellcheck shell=bash disable=SC2154  # the settings named above are asr.sh's

# collect_stats MODULE CONFIG STATS_DIR TRAIN_DATA VALID_DATA TRAIN_KEYS VALID_KEYS EXTRA...
# Run ESPnet's collect-stats mode of MODULE (a training entry point) in
# parallel and aggregate into STATS_DIR. *_DATA are comma-joined
# "path,name,type" triples separated by spaces; EXTRA goes to every job.
collect_stats() {
    local module=$1 config=$2 out=$3 train_data=$4 valid_data=$5 train_keys=$6 valid_keys=$7
    shift 7
    local tmp=${out}.tmp logdir n job triple
    local data_opts=()
    for triple in ${train_data}; do data_opts+=(--train_data_path_and_name_and_type "${triple}"); done
    for triple in ${valid_data}; do data_opts+=(--valid_data_path_and_name_and_type "${triple}"); done
    rm -rf "${tmp}"
    logdir=${tmp}/logdir
    mkdir -p "${logdir}"
    n=$(min "${nj}" "$(min "$(num_lines "${train_keys}")" "$(num_lines "${valid_keys}")")")
    split_keys "${train_keys}" "${n}" "${logdir}/train.JOB.scp"
    split_keys "${valid_keys}" "${n}" "${logdir}/valid.JOB.scp"
    log "collect stats: ${n} jobs, logs in ${out}/logdir/stats.*.log"
    # shellcheck disable=SC2086  # train_cmd and python may carry options
    OMP_NUM_THREADS=1 ${train_cmd} JOB=1:"${n}" "${logdir}/stats.JOB.log" \
        ${python} -m "${module}" --collect_stats true --use_preprocessor true \
        "${token_opts[@]}" "${data_opts[@]}" \
        --train_shape_file "${logdir}/train.JOB.scp" --valid_shape_file "${logdir}/valid.JOB.scp" \
        --output_dir "${logdir}/stats.JOB" --config "${config}" "$@" ||
        die "collect stats failed; see ${logdir}/stats.*.log"
    local inputs=()
    for job in $(seq "${n}"); do inputs+=(--input_dir "${logdir}/stats.${job}"); done
    ${python} -m espnet2.bin.aggregate_stats_dirs "${inputs[@]}" --output_dir "${tmp}" \
        >"${logdir}/aggregate.log" 2>&1 || die "aggregating statistics failed; see ${logdir}/aggregate.log"
    # ESPnet's text shape files carry the vocabulary size after a comma.
    local vocab part
    vocab=$(num_lines "${token_list}")
    for part in train valid; do
        awk -v n="${vocab}" '{ print $0 "," n }' "${tmp}/${part}/text_shape" \
            >"${tmp}/${part}/text_shape.${token_type}"
    done
    replace_dir "${tmp}" "${out}"
}
