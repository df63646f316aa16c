#!/usr/bin/env bash
# The generated bash completion loads in a plain bash and completes subcommands, flags and values.
# Usage: bash_completion.sh COMPLETION_SCRIPT
set -uo pipefail
script=$1
fail=0
# shellcheck disable=SC1090
source "$script" || { echo "FAIL: $script does not load"; exit 1; }
complete -p trawl >/dev/null || { echo "FAIL: no completion registered for trawl"; exit 1; }

# expect "WORDS..." "EXPECTED REPLY" : completes the last word of WORDS.
expect() {
  local line=$1 want=$2
  read -r -a COMP_WORDS <<<"$line"
  [[ "$line" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _trawl
  local got="${COMPREPLY[*]}"
  if [ "$got" != "$want" ]; then
    echo "FAIL: '$line' completed to '$got', want '$want'"
    fail=1
  fi
}
expect "trawl do" "download"
expect "trawl s" "sink"
expect "trawl download --conc" "--concurrency"
expect "trawl download --connect-t" "--connect-timeout"
expect "trawl sink --progress " "auto bar lines none"
expect "trawl sink --progress l" "lines"
expect "trawl fetch --format g" "gallery"
expect "trawl config c" "check"
expect "trawl vent --peer" "--peer-timeout-ms"
expect "trawl download --ver" "--version --verbose"
[ "$fail" -eq 0 ] && echo "bash completion: all cases complete as expected"
exit "$fail"
