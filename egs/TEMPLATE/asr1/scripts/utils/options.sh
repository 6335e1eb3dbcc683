# Option parsing shared by run.sh and asr.sh (sourced, not run).
#
# A script declares its options once, between the lines
#     # >>> options
#     name=default    # one-line help
#     # <<< options
# and calls `parse_options "$0" "$@"`: `--name value` and `--name=value` set
# the variable, `--help` prints every option with its help and default, an
# unknown option or a missing value exits 2. With
# OPTIONS_PASSTHROUGH=true, unknown `--name value` pairs are kept in the array
# `passthrough` for another script instead.
# shellcheck shell=bash

# _option_lines FILE: the "name<TAB>help" lines of FILE's options block.
_option_lines() {
    sed -n '/^# >>> options/,/^# <<< options/p' "$1" |
        sed -n 's/^\([a-z_][a-z_0-9]*\)=.*#[[:space:]]*\(.*\)$/\1\t\2/p'
}

# print_options FILE: one line per option with its help and current value.
print_options() {
    local name help
    while IFS=$'\t' read -r name help; do
        printf '  --%-28s %s (default: "%s")\n' "${name}" "${help}" "${!name}"
    done < <(_option_lines "$1")
}

# _die_usage MESSAGE: report a usage error and exit 2.
_die_usage() {
    echo "$(basename "${0}"): error: $1 (see --help)" >&2
    exit 2
}

# parse_options FILE ARG...: set FILE's declared options from ARG...
parse_options() {
    local file=$1 arg name value
    shift
    local known
    known=" $(_option_lines "${file}" | cut -f1 | tr '\n' ' ') "
    passthrough=()
    while [ $# -gt 0 ]; do
        arg=$1
        case "${arg}" in
            -h | --help)
                if declare -F usage >/dev/null; then usage; else print_options "${file}"; fi
                exit 0
                ;;
            --*=*)
                name=${arg%%=*}
                value=${arg#*=}
                shift
                ;;
            --?*)
                name=${arg}
                [ $# -ge 2 ] || _die_usage "option ${arg} needs a value"
                value=$2
                shift 2
                ;;
            *)
                _die_usage "unexpected argument '${arg}'; options are --name value"
                ;;
        esac
        name=${name#--}
        name=${name//-/_}
        # A value that looks like an option means the real value was left out;
        # only the *_args / *_opts options carry option strings as values.
        case "${name}" in
            *_args | *_opts) ;;
            *) [[ "${value}" == --* ]] && _die_usage "option --${name} needs a value, got '${value}'" ;;
        esac
        if [[ "${known}" != *" ${name} "* ]]; then
            if [ "${OPTIONS_PASSTHROUGH:-false}" = true ]; then
                passthrough+=("--${name}" "${value}")
                continue
            fi
            _die_usage "unknown option --${name}"
        fi
        printf -v "${name}" '%s' "${value}"
    done
}

# check_int NAME...: each named option holds a non-negative integer.
check_int() {
    local name
    for name in "$@"; do
        [[ "${!name}" =~ ^[0-9]+$ ]] || _die_usage "--${name} must be a non-negative integer, got '${!name}'"
    done
}

# check_choice NAME CHOICE...: the option NAME holds one of CHOICE...
check_choice() {
    local name=$1 choice
    shift
    for choice in "$@"; do
        [ "${!name}" = "${choice}" ] && return 0
    done
    _die_usage "--${name} must be one of: $*; got '${!name}'"
}
