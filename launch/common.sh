# Shared by launch/tpu_vm.sh and launch/gpu.sh (sourced, not run): flag parsing, quoting, and
# a `run` that prints every command before it runs it, or only prints it under --dry_run.
# shellcheck shell=bash

# Who is talking in error messages; each script sets it before sourcing.
PROG=${PROG:-launch}
if ((BASH_VERSINFO[0] < 4)); then
  echo "$PROG: error: needs bash >= 4 (macOS ships 3.2: brew install bash)" >&2
  exit 2
fi
DRY_RUN=0
declare -A OPT=()   # --flag value / --flag=value, and boolean flags as 1
PASS=()             # everything after `--`, handed to experiments/main.py unchanged

die() {
  echo "$PROG: error: $*" >&2
  echo "Run '$PROG --help' for the flags." >&2
  exit 2
}

# parse_args "VALUE FLAGS" "BOOLEAN FLAGS" "$@": fills OPT, PASS and DRY_RUN. Hyphens and
# underscores in flag names are interchangeable (--dry-run = --dry_run), as gcloud users type both.
parse_args() {
  local values=" $1 " bools=" $2 " arg name val
  shift 2
  while (($#)); do
    arg=$1
    shift
    # shellcheck disable=SC2034  # PASS is read by the scripts that source this file
    case $arg in
      --)
        PASS=("$@")
        # Nothing real should start because --dry_run landed on the wrong side of `--`.
        [[ " $* " != *" --dry_run "* && " $* " != *" --dry-run "* ]] ||
          die "--dry_run goes before '--' (after it, flags are for experiments/main.py)"
        break
        ;;
      -h | --help) usage; exit 0 ;;
      --*) ;;
      *) die "unexpected argument '$arg' (flags to experiments/main.py go after '--')" ;;
    esac
    name=${arg#--}
    name=${name%%=*}
    name=${name//-/_}
    if [[ $values == *" $name "* ]]; then
      if [[ $arg == *=* ]]; then
        val=${arg#*=}
      else
        # `--zone --dry_run` is a forgotten value, not a zone called --dry_run.
        [[ $# -gt 0 && $1 != --* ]] || die "--$name needs a value"
        val=$1
        shift
      fi
      OPT[$name]=$val
    elif [[ $bools == *" $name "* || $name == dry_run ]]; then
      [[ $arg != *=* ]] || die "--$name takes no value"
      OPT[$name]=1
    else
      die "unknown flag '$arg'"
    fi
  done
  DRY_RUN=${OPT[dry_run]:-0}
}

# require FLAG...: every named flag must have a non-empty value.
require() {
  local name
  for name in "$@"; do
    [[ -n ${OPT[$name]:-} ]] || die "--$name is required"
  done
}

# One word as the shell would need it typed: bare when safe, else single-quoted, else
# double-quoted (readable for remote commands that hold single quotes), else '\''-escaped.
quote() {
  local s=$1
  if [[ $s =~ ^(--[A-Za-z0-9_.-]+=)(.+)$ ]]; then
    # --flag='a b' rather than '--flag=a b': the same word, easier to read.
    printf '%s' "${BASH_REMATCH[1]}"
    s=${BASH_REMATCH[2]}
  fi
  if [[ $s =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$s"
  elif [[ $s != *"'"* ]]; then
    printf "'%s'" "$s"
  elif [[ $s != *[\"\$\`\\]* ]]; then
    printf '"%s"' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# The command line as one copy-pasteable line.
cmdline() {
  local out="" word
  for word in "$@"; do
    out+="$(quote "$word") "
  done
  printf '%s\n' "${out% }"
}

# run CMD...: under --dry_run print it on stdout and do nothing; otherwise log it on stderr with
# a '+ ' prefix and run it.
run() {
  if ((DRY_RUN)); then
    cmdline "$@"
  else
    echo "+ $(cmdline "$@")" >&2
    "$@"
  fi
}
