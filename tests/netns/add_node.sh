#!/usr/bin/env bash
# launch/add-node against a running launch/pipeline --listen 127.0.0.1 --curve, with a fake `ssh`
# first on PATH: there is no ssh server here, so "ssh HOST CMD" runs CMD with bash locally, with
# HOME set to a directory of its own per HOST (the "remote" home) and a PATH without trawl. What
# this tests is the script's logic: endpoints from the run directory, install when trawl is
# missing or older (binary copied to ~/.local/bin), no install when current, refusal of another
# protocol version, the node's own key authorised without restarting the pipeline, the node
# started detached and doing real work (the ledger names it for some files).
#
# Usage: add_node.sh TRAWL_BIN FIXTURE_BIN PIPELINE ADD_NODE
set -uo pipefail
trawl=${1:?} fixture=${2:?} pipeline=${3:?} add_node=${4:?}
command -v sqlite3 >/dev/null || { echo "SKIP: no sqlite3 command (Debian package sqlite3)" >&2; exit 77; }

source "$(dirname "${BASH_SOURCE[0]}")/../support/add_node_harness.sh"
harness_init trawl-addnode
fake_ssh
start_fixture 300

# Not a tcp pipeline: add-node says what to do.
mkdir -p "$work/norun" && : >"$work/norun/x"
out=$("$add_node" hostA --run-dir "$work/norun" --trawl "$trawl" 2>&1)
[ $? = 2 ] && grep -q -- "--listen" <<<"$out" || fail "add-node without endpoints: $out"

# A slow job: one local downloader with 2 transfers, 300 files of 100 ms: ~15 s alone.
start_pipeline
grep -q '^tasks=tcp://127.0.0.1:' "$work/run/endpoints" || fail "endpoints: $(cat "$work/run/endpoints")"

# hostA has no trawl: it gets our binary, a key, and a node that does work.
if ! "$add_node" user@hostA --run-dir "$work/run" --trawl "$trawl" -j 8 --out '~/files' \
  >"$work/addA.out" 2>"$work/addA.err"; then
  fail "add-node hostA: $(cat "$work/addA.err")"
fi
grep -q "no trawl; installing" "$work/addA.err" || fail "hostA: no install announced: $(cat "$work/addA.err")"
cmp -s "$trawl" "$work/hosts/user@hostA/.local/bin/trawl" || fail "hostA: trawl not copied"
[ -f "$work/keys/authorized/hostA.pub" ] || fail "hostA: key not authorised"
key_mode=$(stat -c %a "$work/hosts/user@hostA/.config/trawl/keys/hostA.key" 2>/dev/null)
[ "$key_mode" = 600 ] || fail "hostA: its secret key has mode $key_mode"

# The same host again: current, no install. Then hostB with an older trawl, hostC with another
# protocol.
"$add_node" user@hostA --run-dir "$work/run" --trawl "$trawl" --node hostA2 --out '~/files2' \
  >/dev/null 2>"$work/addA2.err" || fail "add-node hostA again: $(cat "$work/addA2.err")"
grep -q "no install" "$work/addA2.err" || fail "hostA again: $(cat "$work/addA2.err")"
for h in hostB hostC; do mkdir -p "$work/hosts/$h/.local/bin"; done
printf '#!/bin/sh\necho "trawl 0.0.1 (protocol %s)"\n' "$("$trawl" --version | sed -n 's/.*(protocol \([0-9]*\)).*/\1/p')" \
  >"$work/hosts/hostB/.local/bin/trawl"
printf '#!/bin/sh\necho "trawl 99.0.0 (protocol 99)"\n' >"$work/hosts/hostC/.local/bin/trawl"
chmod +x "$work/hosts/hostB/.local/bin/trawl" "$work/hosts/hostC/.local/bin/trawl"
"$add_node" hostB --run-dir "$work/run" --trawl "$trawl" >/dev/null 2>"$work/addB.err" ||
  fail "add-node hostB: $(cat "$work/addB.err")"
grep -q "has trawl 0.0.1; installing" "$work/addB.err" || fail "hostB: no upgrade: $(cat "$work/addB.err")"
cmp -s "$trawl" "$work/hosts/hostB/.local/bin/trawl" || fail "hostB: trawl not upgraded"
if "$add_node" hostC --run-dir "$work/run" --trawl "$trawl" >/dev/null 2>"$work/addC.err"; then
  fail "hostC (protocol 99) was accepted"
fi
grep -q "speaks protocol 99" "$work/addC.err" || fail "hostC: $(cat "$work/addC.err")"

check_node_share hostA 30 "$work/hosts/user@hostA/files" 300
echo "per node: $shares" >&2

[ $failures = 0 ] || { echo "add_node: $failures failure(s)" >&2; exit 1; }
echo "add_node: ok"
