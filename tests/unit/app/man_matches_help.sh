#!/usr/bin/env bash
# Every flag that `trawl --help` and `trawl SUB --help` list appears in the man page generated for
# it, every subcommand in --help has a page, and groff reads each page without warnings.
# Usage: man_matches_help.sh TRAWL_BINARY MAN_DIR
set -euo pipefail
trawl=$1 man_dir=$2
fail=0

# The flags of one --help text: every -x and --long-name at the start of an option line.
flags_of() {
  sed -n '/^Options:/,/^Subcommands:/p' | grep -E '^  +-' | grep -oE '(^|[ ,])--?[A-Za-z][-A-Za-z0-9]*' |
    sed 's/^[ ,]//' | sort -u
}
# The page as plain text: roff's escaped dashes and font changes removed.
page_text() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$1"; }

check_page() { # SUB-ARGS... ; page file in $page
  local page=$1; shift
  if [ ! -f "$page" ]; then echo "FAIL: no man page $page for: trawl $*"; fail=1; return; fi
  local text flags
  text=$(page_text "$page")
  flags=$("$trawl" "$@" --help | flags_of)
  [ -n "$flags" ] || { echo "FAIL: no flags parsed from trawl $* --help"; fail=1; }
  for f in $flags; do
    grep -qE -- "(^|[^-A-Za-z0-9])$f([^-A-Za-z0-9]|\$)" <<<"$text" ||
      { echo "FAIL: $(basename "$page") does not mention $f (listed by trawl $* --help)"; fail=1; }
  done
  if command -v groff >/dev/null; then
    local warnings
    warnings=$(groff -man -ww -z "$page" 2>&1 || true)
    [ -z "$warnings" ] || { echo "FAIL: groff warnings for $page: $warnings"; fail=1; }
  fi
}

check_page "$man_dir/trawl.1"
subs=$("$trawl" --help | sed -n '/^Subcommands:/,$p' | grep -E '^  [a-z]' | awk '{print $1}')
[ -n "$subs" ] || { echo "FAIL: no subcommands in trawl --help"; exit 1; }
for sub in $subs; do
  check_page "$man_dir/trawl-$sub.1" "$sub"
  grep -q "trawl\\\\-$sub" "$man_dir/trawl.1" || { echo "FAIL: trawl.1 does not list $sub"; fail=1; }
  nested=$("$trawl" "$sub" --help | sed -n '/^Subcommands:/,$p' | grep -E '^  [a-z]' | awk '{print $1}' || true)
  for n in $nested; do
    # A nested subcommand (config check) is documented in its parent's page.
    flags=$("$trawl" "$sub" "$n" --help | flags_of)
    text=$(page_text "$man_dir/trawl-$sub.1")
    grep -q "$sub $n" <<<"$text" || { echo "FAIL: trawl-$sub.1 does not document '$sub $n'"; fail=1; }
    for f in $flags; do
      grep -qE -- "(^|[^-A-Za-z0-9])$f([^-A-Za-z0-9]|\$)" <<<"$text" ||
        { echo "FAIL: trawl-$sub.1 does not mention $f of '$sub $n'"; fail=1; }
    done
  done
done
[ "$fail" -eq 0 ] && echo "man pages match --help for: trawl" $subs
exit "$fail"
