# What asr.sh's stages share (sourced, not run): the fingerprints and .done
# markers that make a re-run skip what is up to date, moving a finished
# directory into place, and splitting work into jobs.
# shellcheck shell=bash

# fingerprint WORD... [-- FILE...]: a checksum of the words and the files'
# contents; it names what a stage's output was made from.
fingerprint() {
    local words=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        words+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    {
        printf '%s\n' "${words[@]}"
        local f
        for f in "$@"; do
            printf '== %s\n' "${f##*/}"
            if [ -f "${f}" ]; then cat "${f}"; else echo "(missing)"; fi
        done
    } | md5sum | cut -d' ' -f1
}

# is_done DIR FINGERPRINT: DIR was completed from the same inputs.
is_done() {
    [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$2" ]
}

# mark_done DIR FINGERPRINT: record that DIR is complete.
mark_done() {
    printf '%s\n' "$2" >"$1/.done.tmp"
    mv "$1/.done.tmp" "$1/.done"
}

# replace_dir TMP FINAL: move a finished TMP directory to FINAL; an old FINAL
# is renamed to FINAL.old first and removed last (as pyscripts' datadir.py).
replace_dir() {
    rm -rf "$2.old"
    [ -e "$2" ] && mv "$2" "$2.old"
    mv "$1" "$2"
    rm -rf "$2.old"
}

# split_keys SCP NJ OUTPATTERN: split SCP's keys into NJ contiguous lists,
# OUTPATTERN with JOB replaced by 1..NJ.
split_keys() {
    local total
    total=$(wc -l <"$1")
    awk -v n="$2" -v total="${total}" -v pattern="$3" '{
        i = int((NR - 1) * n / total) + 1
        out = pattern; sub("JOB", i, out)
        print $1 > out
    }' "$1"
}

# num_lines FILE
num_lines() {
    wc -l <"$1" | tr -d ' '
}

# min A B
min() {
    if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi
}

# stage_done N START: log how long stage N took (as said by the caller).
stage_done() {
    _log_from 1 "Stage $1 finished [$((SECONDS - $2))s]"
}
