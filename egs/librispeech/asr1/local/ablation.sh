#!/usr/bin/env bash
# The sharing ablation on the mini corpus (docs/ablation.md): every config of
# conf/ablation/ trained with each seed on the same data and budget, decoded
# twice (acoustic only: CTC prefix search without any LM, so that the rows
# compare encoders; and with the lexicon + word 3-gram of the main job), the
# offline peer recognizers decoded on the same test sets, and the page and
# its plots regenerated from the runs' records.
#
#   local/ablation.sh                                     everything
#   local/ablation.sh --rows "conformer_6x96" --seeds 3   one row, one more seed
#   local/ablation.sh --jobs 2                            two runs at a time
#   local/ablation.sh --stage 3                           only the report
#   local/ablation.sh --dry_run true                      print the commands
#   nohup local/ablation.sh --jobs 2 >exp/ablation.log 2>&1 &   in the background
#
# Every data, training and decoding option is spelled out below and handed to
# asr.sh directly: the study never goes through run.sh, so a change of the
# main job's presets cannot change what the rows were trained and decoded
# with (tests/recipe/test_ablation_commands.py checks this).
#
# Stages: 1 data, tokens, lexicon + word LM and feature statistics (asr.sh
# stages 1-10); 2 per row and seed: training (asr.sh stage 11, experiment
# exp/asr_ablation_<row>_seed<S>, log exp/ablation_logs/<row>_seed<S>.log),
# both decodings with scoring (stages 12-13) and the run's record
# (local/ablation_record.py -> docs/ablation/runs/<row>_seed<S>.json), then
# a third seed (--third_seed) of every row of the grid or the main job's
# budget whose dev mean lies closer to another row's than their spread;
# 3 peers (local/peers.py, run in .venv-peers: `make peers`; records in
# docs/ablation/peers/) and the report (local/ablation_report.py), which
# reads only the records.
#
# The records are the study's results, committed with the code; exp/ is
# scratch. A run whose record was made from the row's config as it is now is
# skipped, so the study spans machines and sessions: run the same command
# again and it does what is left. asr.sh resumes an interrupted training
# from its last checkpoint while exp/ is still there.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/utils/log.sh
. scripts/utils/log.sh

# >>> options (name=default  # help); --help lists these lines
stage=1                    # first stage to run (1 data, 2 rows, 3 peers and report)
stop_stage=3               # last stage to run
capacity_rows="conformer_6x48 conformer_6x64 conformer_6x72 conformer_6x96 conformer_6x144"  # step 1: plain Conformers at the virtual depth
grid_rows="conformer_1x144 conformer_6x72 repeat_1x6_144 deep_repeat_1x12_144_interctc share_modules_120 tie_2x3_132 lowrank_144 best_3x2_132 conformer_6x144"  # step 2: the grid at B ~ 0.87M (virtual model 6 x 144)
default_rows="shared_3x2_144 conformer_3x144 streaming_3x2_144"  # the main job's model against a plain one of its size and its streaming variant
plain_rows="conformer_1x144 conformer_6x72"  # the grid's plain rows at B (shallow, narrow)
upper_row=conformer_6x144  # the grid's upper bound: the virtual model, unshared
default_plain_rows=conformer_3x144  # the plain row at the main job's budget
rows=                      # configs of conf/ablation/ to run (names without .yaml); empty: the three groups above
seeds="1 2"                # training seeds of each row (initialization and data order)
third_seed=3               # seed of the third run of a row whose dev mean lies closer to another's than their spread; empty: none
dry_run=false              # print the asr.sh commands instead of running them
mini_hours=2.0             # hours of synthesized training speech (the main job's)
corpus_seed=1              # seed of the mini corpus (the main job's)
speed_perturb_factors="0.9 1.0 1.1"  # speed perturbation of the training set
test_sets="dev test_sentences test_voices test_librivox"  # sets decoded per row
acoustic_config=conf/decode_asr_acoustic.yaml  # decoding without any LM (primary score)
lexicon_config=conf/decode_asr.yaml  # lexicon + word 3-gram decoding (second column)
peers="pocketsphinx whisper"  # peer recognizers (local/peers.py --system); empty: none
peers_python=../../../.venv-peers/bin/python3  # Python of the peers' environment (`make peers` at the repository root)
nj=2                       # parallel jobs for data preparation and statistics
inference_nj=2             # parallel decoding jobs per row
jobs=1                     # runs (row, seed) trained at once, each with cores/jobs threads
records=../../../docs/ablation/runs  # one JSON record per finished run (committed)
peer_records=../../../docs/ablation/peers  # one JSON record per peer recognizer (committed)
doc=../../../docs/ablation.md  # generated report (tables; the reading is kept)
plots=../../../docs/ablation  # directory of the generated plots
# <<< options

# shellcheck source=scripts/utils/options.sh
. scripts/utils/options.sh
parse_options "$0" "$@"
check_int stage stop_stage nj inference_nj jobs
[ "${jobs}" -ge 1 ] || _die_usage "--jobs must be at least 1"
check_choice dry_run true false
# shellcheck source=path.sh
. ./path.sh
for f in "${acoustic_config}" "${lexicon_config}"; do
    [ -f "${f}" ] || _die_usage "no decoding config ${f}"
done

# Other configs of conf/ablation/ (diag_*: the deep-reuse diagnosis) run
# only when named by --rows; the report lists every recorded row.
if [ -z "${rows}" ]; then
    rows="${capacity_rows} ${grid_rows} ${default_rows}"
fi
# A row named twice (the upper bound is on the curve and in the grid) runs once.
# shellcheck disable=SC2086  # rows is a list of names
rows=$(printf '%s\n' ${rows} | awk '!seen[$0]++' | tr '\n' ' ')
for row in ${rows}; do
    [ -f "conf/ablation/${row}.yaml" ] || _die_usage "no config conf/ablation/${row}.yaml"
done
for seed in ${seeds}; do
    [[ "${seed}" =~ ^[0-9]+$ ]] || _die_usage "--seeds takes integers, got '${seed}'"
done
[[ "${third_seed}" =~ ^[0-9]*$ ]] || _die_usage "--third_seed takes an integer or nothing, got '${third_seed}'"

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

# run COMMAND...: run it, or with --dry_run print it (shell-quoted).
run() {
    if [ "${dry_run}" = true ]; then
        printf '%q ' "$@"
        echo
    else
        "$@"
    fi
}

# asr STAGE STOP_STAGE OPTION...: run asr.sh with the study's data options.
asr() {
    run ./asr.sh --stage "$1" --stop_stage "$2" "${data_opts[@]}" "${@:3}"
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

# The record of a run is up to date when it was made from the row's config
# as it is now.
record_is_current() { # ROW SEED
    python3 local/ablation_record.py --is_current "${records}/$1_seed$2.json" \
        --config "conf/ablation/$1.yaml"
}

# run_one ROW SEED: train, decode both ways, score, and keep the record.
run_one() {
    local row=$1 seed=$2
    local tag=ablation_${row}_seed${seed}
    # The code a run starts with (the record is written at its end).
    local commit
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- 2>/dev/null || commit="${commit}+changes"
    local row_opts=(--asr_config "conf/ablation/${row}.yaml" --asr_tag "${tag}"
        --asr_args "--seed ${seed}")
    asr 11 13 "${row_opts[@]}" --use_word_lm false \
        --inference_config "${acoustic_config}" --inference_tag decode_acoustic
    asr 12 13 "${row_opts[@]}" --use_word_lm true \
        --inference_config "${lexicon_config}" --inference_tag decode_lexicon
    local record=(python3 local/ablation_record.py --exp "exp/asr_${tag}"
        --config "conf/ablation/${row}.yaml" --row "${row}" --seed "${seed}"
        --test_sets "${test_sets}" --decodes "decode_acoustic decode_lexicon"
        --jobs "${jobs}" --commit "${commit}" --out "${records}/${row}_seed${seed}.json")
    run "${record[@]}"
}

# run_rows ROWS SEEDS: every (row, seed) without a current record, ${jobs} at
# a time; exits non-zero naming the runs that failed once all have ended.
run_rows() {
    local rows=$1 seeds=$2 row seed item pid logfile n=0
    local todo=() failed=()
    local -A running=()
    for row in ${rows}; do
        for seed in ${seeds}; do
            if record_is_current "${row}" "${seed}"; then
                log "Stage 2: ${row}, seed ${seed}: finished (${records}/${row}_seed${seed}.json)"
            else
                todo+=("${row}:${seed}")
            fi
        done
    done
    log "Stage 2: ${#todo[@]} runs to do, ${jobs} at a time with ${OMP_NUM_THREADS} threads each"
    mkdir -p exp/ablation_logs
    for item in "${todo[@]}"; do
        row=${item%%:*}
        seed=${item##*:}
        n=$((n + 1))
        if [ "${dry_run}" = true ]; then
            run_one "${row}" "${seed}"
            continue
        fi
        # Wait for a free slot; a finished run's status is collected there.
        while [ "${#running[@]}" -ge "${jobs}" ]; do
            wait -n || true
            for pid in "${!running[@]}"; do
                if ! kill -0 "${pid}" 2>/dev/null; then
                    wait "${pid}" || failed+=("${running[${pid}]}")
                    unset "running[${pid}]"
                fi
            done
        done
        logfile=exp/ablation_logs/${row}_seed${seed}.log
        log "Stage 2: run ${n}/${#todo[@]}: conf/ablation/${row}.yaml, seed ${seed} -> exp/asr_ablation_${row}_seed${seed} (log: ${logfile})"
        run_one "${row}" "${seed}" >"${logfile}" 2>&1 &
        running[$!]="${row} seed ${seed} (${logfile})"
    done
    for pid in "${!running[@]}"; do
        wait "${pid}" || failed+=("${running[${pid}]}")
    done
    if [ "${#failed[@]}" -gt 0 ]; then
        for item in "${failed[@]}"; do log "Stage 2: FAILED: ${item}"; done
        exit 1
    fi
}

if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    # Each run gets an equal share of the cores (ESPnet's training and
    # decoding take torch's threads from OMP_NUM_THREADS).
    cores=$(nproc)
    export OMP_NUM_THREADS=$((cores / jobs > 0 ? cores / jobs : 1))
    run_rows "${rows}" "${seeds}"
    # The rule of the study: two rows of one budget whose dev means lie
    # closer than their seeds' spread get a third seed each. Which rows that
    # is follows from the records just written, so it is decided here, and a
    # second run of the same command does what a third seed's result asks.
    budget_rows=" ${grid_rows} ${default_rows} "
    in_budgets=false
    for row in ${rows}; do
        [[ "${budget_rows}" == *" ${row} "* ]] && in_budgets=true
    done
    if [ -n "${third_seed}" ] && [ "${in_budgets}" = true ]; then
        owed=$(python3 local/ablation_report.py --third_seed_rows --records "${records}" \
            --grid "${grid_rows}" --default "${default_rows}")
        third=()
        for row in ${owed}; do
            [[ " ${rows} " == *" ${row} "* ]] && third+=("${row}")
        done
        log "Stage 2: rows whose dev means lie closer than their spread, for seed ${third_seed}: ${third[*]:-none}"
        [ "${#third[@]}" -eq 0 ] || run_rows "${third[*]}" "${third_seed}"
    fi
fi

if [ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ]; then
    data_dirs=()
    for dset in ${test_sets}; do data_dirs+=("dump/raw/${dset}"); done
    for system in ${peers}; do
        out=exp/peer_${system}
        record=(python3 local/ablation_record.py --peer "${out}" --test_sets "${test_sets}"
            --out "${peer_records}/${system}.json")
        if [ -f "${peer_records}/${system}.json" ]; then
            log "Stage 3: peer ${system}: finished (${peer_records}/${system}.json)"
            continue
        fi
        if [ ! -f "${out}/system.json" ]; then
            log "Stage 3: peer ${system}: ${data_dirs[*]} -> ${out}"
            [ "${dry_run}" = true ] || [ -x "${peers_python}" ] ||
                die "no peers' environment at ${peers_python}: run 'make peers' at the repository root"
            [ "${dry_run}" = true ] || mkdir -p "${out}"
            run "${peers_python}" local/peers.py --system "${system}" --outdir "${out}" "${data_dirs[@]}"
        fi
        run "${record[@]}"
    done
    report=(python3 local/ablation_report.py --records "${records}"
        --peer_records "${peer_records}" --test_sets "${test_sets}"
        --capacity "${capacity_rows}" --grid "${grid_rows}" --default "${default_rows}"
        --plain "${plain_rows}" --upper "${upper_row}" --default_plain "${default_plain_rows}"
        --doc "${doc}" --plots "${plots}")
    log "Stage 3: report: ${records}, ${peer_records} -> ${doc}, ${plots}"
    run "${report[@]}"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"
