# Shared by tests/netns/add_node.sh and tests/package/add_node_deb.sh (sourced, not run): a work
# directory cleaned at exit (processes we started, by PID, and the nodes the fake ssh started),
# fail(), a fake `ssh` first on PATH (there is no ssh server here: "ssh HOST CMD" runs CMD with
# bash locally, HOME a directory of its own per HOST under $work/hosts), the fixture, and a slow
# launch/pipeline --listen 127.0.0.1 --curve for nodes to join.
# Needs: fixture, pipeline, trawl set by the sourcing script.

# harness_init NAME: $work, pids, failures, the EXIT trap.
harness_init() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  failures=0
  trap harness_cleanup EXIT
}

harness_cleanup() {
  local p sig
  for sig in TERM KILL; do
    for p in "${pids[@]}"; do kill "-$sig" "$p" 2>/dev/null; done
    # Nodes started through the fake ssh (their PIDs are in the run dir's nodes file).
    if [ -f "$work/run/nodes" ]; then
      while read -r _ _ p; do kill "-$sig" "$p" 2>/dev/null; done <"$work/run/nodes"
    fi
    [ $sig = TERM ] && sleep 0.5
  done
  wait 2>/dev/null
  if [ "$failures" = 0 ] && [ -z "${TRAWL_KEEP_TMP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# fake_ssh [PATH_PREFIX]: $work/bin/ssh [-o X | -p X | -i X | -x ...] HOST COMMAND... runs COMMAND
# with HOME=$work/hosts/HOST and PATH=PATH_PREFIX:/usr/local/bin:/usr/bin:/bin, where
# PATH_PREFIX may name the host's home as $h (e.g. '$h/root/usr/bin').
fake_ssh() {
  local prefix=${1:+$1:}
  mkdir -p "$work/bin" "$work/hosts"
  cat >"$work/bin/ssh" <<EOF
#!/usr/bin/env bash
while [ \$# -gt 0 ]; do
  case "\$1" in -o|-p|-i|-l|-F) shift 2 ;; -*) shift ;; *) break ;; esac
done
host=\$1; shift
echo "\$host: \$*" >>"$work/ssh.log"
h="$work/hosts/\$host"
mkdir -p "\$h"
exec env -i HOME="\$h" PATH="$prefix/usr/local/bin:/usr/bin:/bin" bash -c "\$*"
EOF
  chmod +x "$work/bin/ssh"
  export PATH="$work/bin:$PATH"
}

# start_fixture COUNT: COUNT files of ~2 KB, 100 ms each; sets $url.
start_fixture() {
  "$fixture" --port 0 --corpus uniform --count "$1" --size 2000 --delay-ms 100 \
    --ready-file "$work/fixture.ready" >"$work/fixture.log" 2>&1 &
  pids+=($!)
  local i
  for ((i = 0; i < 200; i++)); do [ -s "$work/fixture.ready" ] && break; sleep 0.05; done
  url=$(sed -n 's/^url=//p' "$work/fixture.ready")
  [ -n "$url" ] || { fail "fixture did not start"; exit 1; }
}

# start_pipeline: a slow job (one local downloader with 2 transfers) listening on 127.0.0.1 with
# CurveZMQ keys in $work/keys; sets $pipeline_pid once $work/run/endpoints is there.
start_pipeline() {
  TRAWL_BIN="$trawl" "$pipeline" --source "$url/list.txt" --out "$work/out" --downloaders 1 \
    --concurrency 2 --progress none --run-dir "$work/run" --listen 127.0.0.1 --tasks-port '*' \
    --results-port '*' --curve "$work/keys" >"$work/pipeline.out" 2>"$work/pipeline.err" &
  pipeline_pid=$!
  pids+=("$pipeline_pid")
  local i
  for ((i = 0; i < 200; i++)); do [ -s "$work/run/endpoints" ] && break; sleep 0.05; done
  [ -s "$work/run/endpoints" ] || { fail "no endpoints file"; cat "$work/pipeline.err" >&2; exit 1; }
}

# check_node_share NODE MIN HOST_OUT TOTAL: the pipeline ends with TOTAL done, NODE did at least
# MIN files per the ledger, and HOST_OUT (the node's --out) holds exactly those.
check_node_share() {
  local node=$1 min=$2 host_out=$3 total=$4 status
  wait "$pipeline_pid"; status=$?
  [ "$status" = 0 ] || fail "pipeline exit $status: $(tail -5 "$work/pipeline.err")"
  grep -q "$total done" "$work/pipeline.out" || fail "summary: $(cat "$work/pipeline.out")"
  local ledger="$work/out/.trawl/ledger.sqlite"
  shares=$(sqlite3 -readonly "$ledger" "SELECT node, count(*) FROM links WHERE state=2 GROUP BY node" | tr '\n' ' ')
  local did n
  did=$(sqlite3 -readonly "$ledger" "SELECT count(*) FROM links WHERE state=2 AND node='$node'")
  [ "${did:-0}" -ge "$min" ] || fail "$node did $did files (per node: $shares)"
  n=$(find "$host_out" -type f ! -name '.trawl-*' | wc -l)
  [ "$n" = "$did" ] || fail "$node's files hold $n files, the ledger says $did"
}
