#!/usr/bin/env bash
# trawl's stand-ins for libraries it never uses (cmake/stand-ins.cmake), as the built trawl uses
# them: linked into trawl with the static archives (MODE static, cmake/static-deps.cmake), or as
# shared libraries loaded from their directory (MODE shared). Either way none of the libraries
# the real ones bring (GnuTLS, Kerberos, SASL) is loaded, and in static mode neither libcurl,
# OpenSSL, ZeroMQ, SQLite, libstdc++, spdlog nor fmt as shared libraries; every symbol resolves
# when all are bound at start (LD_BIND_NOW, as launch/pipeline runs trawl). Then each stand-in
# built as a shared library is called: a GSS-API function fails as a library without
# credentials does; libssh2_init (which curl_global_init calls) succeeds; any other function,
# which trawl never reaches, says which it is and aborts instead of returning.
# Usage: stand_ins.sh static|shared TRAWL STAND_IN_DIR PROBE SONAME...
set -uo pipefail
mode=${1:?} trawl=${2:?} dir=${3:?} probe=${4:?}
shift 4
fail=0
bad() { echo "FAIL: $*"; fail=1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# What the dynamic linker loads for trawl (ldd's own mechanism; trawl itself does not run).
LD_TRACE_LOADED_OBJECTS=1 "$trawl" >"$tmp/loaded" 2>&1 || bad "tracing trawl's libraries failed"
not_loaded=(libgnutls.so.30 libkrb5.so.3 libsasl2.so.2 libp11-kit.so.0)
case $mode in
  shared)
    for soname in "$@"; do
      grep -qE "^\s*$soname => $dir/$soname " "$tmp/loaded" ||
        bad "$soname is not loaded from $dir: $(grep "$soname" "$tmp/loaded")"
    done ;;
  static)
    not_loaded+=("$@" libcurl.so.4 libssl.so.3 libcrypto.so.3 libzmq.so.5 libsqlite3.so.0
                 libstdc++.so.6 libspdlog.so.1.10 libfmt.so.9) ;;
  *) bad "mode '$mode' is neither static nor shared" ;;
esac
for real in "${not_loaded[@]}"; do
  grep -q "$real" "$tmp/loaded" && bad "$real is loaded"
done
echo "trawl loads $(grep -c '=>' "$tmp/loaded") libraries ($mode)"

# Every binding made at start: an import a stand-in lacks is a fatal "symbol lookup error".
out=$(LD_BIND_NOW=1 "$trawl" --version 2>&1) || bad "LD_BIND_NOW=1 trawl --version: $out"
[[ $out =~ ^trawl\  ]] || bad "LD_BIND_NOW=1 trawl --version said '$out'"

for soname in "$@"; do
  lib=$dir/$soname
  # One function of each stand-in (the first it defines), and every GSS-API one.
  mapfile -t funcs < <(nm -D --defined-only "$lib" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }')
  [ ${#funcs[@]} -gt 0 ] || { bad "$soname defines no function"; continue; }
  for f in "${funcs[@]}"; do
    if [[ $f == gss_* ]]; then
      got=$("$probe" "$lib" "$f" 2>&1)
      # GSS_S_FAILURE (13 << 16), minor status 0.
      [ "$got" = "major=0xd0000 minor=0" ] || bad "$soname $f: '$got'"
    fi
  done
  if [[ $soname == libssh2.so.* ]]; then
    "$probe" "$lib" libssh2_init >"$tmp/out" 2>&1 || bad "$soname libssh2_init: $(cat "$tmp/out")"
    f=libssh2_agent_init
  else
    f=${funcs[0]}
    [[ $f == gss_* ]] && continue
  fi
  "$probe" "$lib" "$f" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ $rc -eq 134 ] || bad "$soname $f: exit $rc, not SIGABRT ($(cat "$tmp/out" "$tmp/err"))"
  grep -qF "trawl: $f called, but $soname is trawl's stand-in" "$tmp/err" ||
    bad "$soname $f: stderr '$(cat "$tmp/err")'"
done
[ $fail -eq 0 ] && echo "ok: $# stand-ins"
exit $fail
