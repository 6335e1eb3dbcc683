# The recipes' one option parser (sourced, not run).
#
# A script declares its options once, between the lines
#     # >>> options
#     name=default    # one-line help
#     # <<< options
# and calls `parse_options "$0" "$@"`: `--name value` and `--name=value` set
# the variable, `--help` prints every option with its help and default (or
# calls the script's `usage` function), an unknown option or a missing value
# exits 2. With OPTIONS_PASSTHROUGH=true, unknown `--name value` pairs are
# kept in the array `passthrough` for another script instead; with
# OPTIONS_ARGS=true, the options end at the first argument that is not one,
# and the arguments from there on are kept in the array `args`.
# shellcheck shell=bash

# _option_lines FILE: the "name<TAB>help" lines of FILE's options block.
_option_lines() {
    sed -n '/^# >>> options/,/^# <<< options/p' "$1" |
        sed -n 's/^\([a-z_][a-z_0-9]*\)=.*#[[:space:]]*\(.*\)$/\1\t\2/p'
}

# print_options FILE: one line per option with its help and current value.
print_options() {
    local _name _help
    while IFS=$'\t' read -r _name _help; do
        printf '  --%-28s %s (default: "%s")\n' "${_name}" "${_help}" "${!_name}"
    done < <(_option_lines "$1")
}

# _die_usage MESSAGE...: report a usage error and exit 2.
_die_usage() {
    echo "$(basename "${0}"): error: $* (see --help)" >&2
    exit 2
}

# parse_options FILE ARG...: set FILE's declared options from ARG...
# (Its locals start with _ so that they hide no option of the same name.)
parse_options() {
    local _file=$1 _arg _name _value _known
    shift
    _known=" $(_option_lines "${_file}" | cut -f1 | tr '\n' ' ') "
    passthrough=()
    args=()
    while [ $# -gt 0 ]; do
        _arg=$1
        case "${_arg}" in
            -h | --help)
                if declare -F usage >/dev/null; then usage; else print_options "${_file}"; fi
                exit 0
                ;;
            --*=*)
                _name=${_arg%%=*}
                _value=${_arg#*=}
                shift
                ;;
            --?*)
                _name=${_arg}
                [ $# -ge 2 ] || _die_usage "option ${_arg} needs a value"
                _value=$2
                shift 2
                ;;
            *)
                if [ "${OPTIONS_ARGS:-false}" = true ]; then
                    # shellcheck disable=SC2034  # for the caller
                    args=("$@")
                    return 0
                fi
                _die_usage "unexpected argument '${_arg}'; options are --name value"
                ;;
        esac
        _name=${_name#--}
        _name=${_name//-/_}
        # A value that looks like an option means the real value was left out;
        # only the *_args / *_opts options carry option strings as values.
        case "${_name}" in
            *_args | *_opts) ;;
            *) [[ "${_value}" == --* ]] && _die_usage "option --${_name} needs a value, got '${_value}'" ;;
        esac
        if [[ "${_known}" != *" ${_name} "* ]]; then
            if [ "${OPTIONS_PASSTHROUGH:-false}" = true ]; then
                passthrough+=("--${_name}" "${_value}")
                continue
            fi
            _die_usage "unknown option --${_name}"
        fi
        printf -v "${_name}" '%s' "${_value}"
    done
}

# check_int NAME...: each named option holds a non-negative integer.
check_int() {
    local _name
    for _name in "$@"; do
        [[ "${!_name}" =~ ^[0-9]+$ ]] || _die_usage "--${_name} must be a non-negative integer, got '${!_name}'"
    done
}

# check_choice NAME CHOICE...: the option NAME holds one of CHOICE...
check_choice() {
    local _name=$1 _choice
    shift
    for _choice in "$@"; do
        [ "${!_name}" = "${_choice}" ] && return 0
    done
    _die_usage "--${_name} must be one of: $*; got '${!_name}'"
}
