#!/usr/bin/env bash
# The sharing ablation on the mini corpus (docs/ablation.md): every config of
# conf/ablation/ trained and decoded on the same data with the same budget
# (3 epochs, same batches and optimizer, CTC only, decoded without the LM so
# that the rows compare acoustic models), the offline peer
# recognizers decoded on the same test sets, and the table and plot
# regenerated from the experiment directories.
#
#   local/ablation.sh                         everything (about 1 h 10 min on two cores)
#   local/ablation.sh --rows "b1_repeat"      one row
#   local/ablation.sh --stage 3               only the table and the plot
#
# Stages: 1 data, token list and feature statistics (./run.sh stages 1-10 with
# the default config; done already after ./run.sh), 2 one training and
# decoding per row (./run.sh stages 11-13, experiment exp/asr_ablation_<row>),
# 3 peers (local/peers.py; needs the "peers" extra) and the report
# (local/ablation_report.py). Each step is skipped when its output is up to
# date, as in asr.sh.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

# >>> options (name=default  # help); --help lists these lines
stage=1                    # first stage to run (1 data, 2 rows, 3 peers and report)
stop_stage=3               # last stage to run
rows=                      # configs of conf/ablation/ to run (names without .yaml); empty: all
test_sets="test_sentences test_voices test_librivox"  # test sets decoded per row
peers="pocketsphinx whisper"  # peer recognizers (local/peers.py --system); empty: none
inference_nj=2             # parallel decoding jobs per row
beam_size=4                # CTC prefix beam per row (docs/ablation.md's table used 4)
doc=../../../docs/ablation.md  # generated report (table, reading is kept)
plot=../../../docs/ablation_wer.png  # generated plot of WER against unique parameters
# <<< options

cd "$(dirname "$0")/.."
# shellcheck source=local/options.sh
. local/options.sh
parse_options "$0" "$@"
check_int stage stop_stage inference_nj beam_size
# shellcheck source=path.sh
. ./path.sh

if [ -z "${rows}" ]; then
    rows=$(for f in conf/ablation/*.yaml; do basename "${f}" .yaml; done | tr '\n' ' ')
fi
for row in ${rows}; do
    [ -f "conf/ablation/${row}.yaml" ] || _die_usage "no config conf/ablation/${row}.yaml"
done

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    log "Stage 1: data, tokens and feature statistics (./run.sh --stop_stage 10)"
    ./run.sh --stop_stage 10
    # The rows reuse the statistics of the default config: they must compute
    # the same features from the same front end.
    # shellcheck disable=SC2086  # rows is a list of names
    python3 - conf/train_asr.yaml ${rows} <<'EOF'
import sys, yaml
ref = yaml.safe_load(open(sys.argv[1]))
for row in sys.argv[2:]:
    conf = yaml.safe_load(open(f"conf/ablation/{row}.yaml"))
    for key in ("frontend", "frontend_conf", "normalize"):
        if conf.get(key) != ref.get(key):
            sys.exit(f"conf/ablation/{row}.yaml: {key} differs from {sys.argv[1]}; "
                     "the rows share its feature statistics")
EOF
fi

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    n=0
    total=$(wc -w <<<"${rows}")
    for row in ${rows}; do
        n=$((n + 1))
        log "Stage 2: row ${n}/${total}: conf/ablation/${row}.yaml -> exp/asr_ablation_${row}"
        ./run.sh --stage 11 --stop_stage 13 --asr_config "conf/ablation/${row}.yaml" \
            --asr_tag "ablation_${row}" --test_sets "${test_sets}" --use_lm false \
            --inference_nj "${inference_nj}" --inference_args "--beam_size ${beam_size}"
    done
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    data_dirs=()
    for dset in ${test_sets}; do data_dirs+=("dump/raw/${dset}"); done
    for system in ${peers}; do
        out=exp/peer_${system}
        if [ -f "${out}/system.json" ]; then
            log "Stage 3: ${out} is up to date (remove it to decode again)"
        else
            log "Stage 3: peer ${system}: ${data_dirs[*]} -> ${out}"
            mkdir -p "${out}"
            python3 local/peers.py --system "${system}" --outdir "${out}" "${data_dirs[@]}"
        fi
    done
    exps=()
    for row in ${rows}; do exps+=("exp/asr_ablation_${row}"); done
    peer_dirs=()
    for system in ${peers}; do peer_dirs+=("exp/peer_${system}"); done
    log "Stage 3: report: ${exps[*]} ${peer_dirs[*]} -> ${doc}, ${plot}"
    python3 local/ablation_report.py --test_sets "${test_sets}" --doc "${doc}" \
        --plot "${plot}" --exps "${exps[@]}" --peers "${peer_dirs[@]}"
fi
log "Successfully finished."
