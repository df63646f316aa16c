#!/usr/bin/env bash
# Multi-host end-to-end test: trawl across network namespaces made here, joined by veth pairs on a
# private bridge, with CurveZMQ keys over tcp.
#
#   hub  10.77.0.1  vent + sink (+ the fetcher)      web  10.77.0.2  trawl-fixture
#   n1   10.77.0.11 n2 10.77.0.12 n3 10.77.0.13      downloader nodes, each with its own --out
#   x    10.77.0.14 an intruder with a key pair that is not authorised
#
# The bridge lives in a namespace of its own, so nothing changes in the host's network; every
# name carries this run's PID and the EXIT trap deletes exactly the namespaces it made (and with
# them their veths and the bridge), and stops exactly the processes it started (by PID).
#
# Jobs (2,000 files each, fixture delay --delay-ms per request):
#   1 balance: n1 and n2, same -j, each must do 40-60%; in namespace x, a node with an
#     unauthorised key and one without keys get no task, write nothing, and are logged.
#   2 late join: n1 alone, n2 joins when half is done; n2 must do >= 40% of what was left.
#   3 faults: n1 and n2, n2 killed with SIGKILL at ~30%, n3 added at ~50%; all done, n3 did
#     real work, its first task within 1 s of its start.
# Every job: every link done, each file checked against the fixture's manifest (size, SHA-256)
# in the --out of the node the ledger names.
#
# Usage: multihost.sh TRAWL_BIN FIXTURE_BIN   (root; exits 77 = skipped when it cannot run)
set -uo pipefail

trawl=${1:?usage: multihost.sh TRAWL_BIN FIXTURE_BIN}
fixture=${2:?usage: multihost.sh TRAWL_BIN FIXTURE_BIN}
files=${TRAWL_NETNS_FILES:-2000}
delay=${TRAWL_NETNS_DELAY_MS:-40}
conc=${TRAWL_NETNS_CONCURRENCY:-8}

skip() { echo "SKIP: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces (CI runs as root)"
command -v ip >/dev/null || skip "no ip command (Debian package iproute2)"
command -v sqlite3 >/dev/null || skip "no sqlite3 command (Debian package sqlite3)"

tag="tw$$"
sw="$tag-sw"
hosts=(hub web n1 n2 n3 x)
declare -A addr=([hub]=10.77.0.1 [web]=10.77.0.2 [n1]=10.77.0.11 [n2]=10.77.0.12 [n3]=10.77.0.13 [x]=10.77.0.14)
made_ns=()
pids=()
work=$(mktemp -d /tmp/trawl-netns.XXXXXX)
failures=0

cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
  local ns
  for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done
  if [ "$failures" = 0 ] && [ -z "${TRAWL_KEEP_TMP:-}" ]; then rm -rf "$work"; else echo "logs kept in $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
note() { echo "[$(date +%T.%N | cut -c1-12)] $*" >&2; }

# --- network ---
mk_ns() { ip netns add "$1" || skip "cannot create network namespace $1 (no CAP_SYS_ADMIN?)"; made_ns+=("$1"); ip -n "$1" link set lo up; }
mk_ns "$sw"
ip -n "$sw" link add "${tag}br" type bridge || skip "cannot create a bridge"
ip -n "$sw" link set "${tag}br" up
i=0
for h in "${hosts[@]}"; do
  mk_ns "$tag-$h"
  ip -n "$sw" link add "${tag}p$i" type veth peer name eth0 netns "$tag-$h" || skip "cannot create veth pairs"
  ip -n "$sw" link set "${tag}p$i" master "${tag}br" up
  ip -n "$tag-$h" addr add "${addr[$h]}/24" dev eth0
  ip -n "$tag-$h" link set eth0 up
  i=$((i + 1))
done
in_ns() { local h=$1; shift; ip netns exec "$tag-$h" "$@"; }

# Starts a process in namespace $1 (logs to $work/$2.log); its PID in $last.
spawn() {
  local h=$1 name=$2; shift 2
  ip netns exec "$tag-$h" "$@" >"$work/$name.log" 2>&1 </dev/null &
  last=$!
  pids+=("$last")
}
wait_file() { # wait_file PATH SECONDS
  local until=$((SECONDS + $2))
  while [ ! -s "$1" ]; do [ $SECONDS -ge $until ] && return 1; sleep 0.05; done
}
ready_value() { sed -n "s/^$2=//p" "$1" | head -1; }

# --- keys ---
keys="$work/keys"
mkdir -p "$keys/authorized"
for k in server n1 n2 n3 x; do "$trawl" keygen --out "$keys/$k" >/dev/null || { fail "keygen $k"; exit 1; }; done
for k in n1 n2 n3; do cp "$keys/$k.pub" "$keys/authorized/"; done
server_keys=(--curve-secret "$keys/server.key" --curve-authorized "$keys/authorized")

# --- the web server ---
spawn web fixture "$fixture" --host "${addr[web]}" --port 0 --corpus uniform --count "$files" \
  --size 3000 --delay-ms "$delay" --ready-file "$work/fixture.ready"
wait_file "$work/fixture.ready" 20 || { fail "fixture did not start"; cat "$work/fixture.log" >&2; exit 1; }
web_url=$(ready_value "$work/fixture.ready" url)
# GET over bash's /dev/tcp (no curl needed), headers stripped.
web_host=${web_url#http://}; web_port=${web_host##*:}; web_host=${web_host%:*}
in_ns hub bash -c "exec 3<>/dev/tcp/$web_host/$web_port && printf 'GET /manifest.tsv HTTP/1.0\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3 && cat <&3" |
  tr -d '\r' | sed '1,/^$/d' >"$work/manifest.tsv"
[ -s "$work/manifest.tsv" ] || { fail "no manifest from the fixture"; exit 1; }
declare -A want_sha want_size
while IFS=$'\t' read -r name size sha; do want_sha[$name]=$sha; want_size[$name]=$size; done <"$work/manifest.tsv"
note "fixture on $web_url: ${#want_sha[@]} files, ${delay} ms per request"

# --- one job ---
job=0
start_hub() { # vent and sink in hub, tcp on 10.77.0.1 with keys; sets tasks_ep results_ep
  job=$((job + 1))
  local d="$work/job$job"
  mkdir -p "$d"
  jobdir=$d
  spawn hub "job$job-sink" "$trawl" sink --bind "tcp://${addr[hub]}:*" --acks "ipc://$d/acks" \
    --progress none --ready-file "$d/sink.ready" "${server_keys[@]}"
  sink_pid=$last
  wait_file "$d/sink.ready" 10 || { fail "job $job: sink did not start"; cat "$work/job$job-sink.log" >&2; return 1; }
  results_ep=$(ready_value "$d/sink.ready" results)
  spawn hub "job$job-vent" "$trawl" vent --links "ipc://$d/links" --bind "tcp://${addr[hub]}:*" \
    --acks "ipc://$d/acks" --sink "$results_ep" --state "$d/state" --peer-timeout-ms 2000 \
    --per-host 0 --ready-file "$d/vent.ready" "${server_keys[@]}"
  vent_pid=$last
  wait_file "$d/vent.ready" 10 || { fail "job $job: vent did not start"; cat "$work/job$job-vent.log" >&2; return 1; }
  tasks_ep=$(ready_value "$d/vent.ready" tasks)
}
node() { # node HOST: a downloader in namespace HOST with HOST's key; PID in $last
  local h=$1
  mkdir -p "$jobdir/out-$h"
  spawn "$h" "job$job-$h" "$trawl" download --connect "$tasks_ep" --sink "$results_ep" \
    --out "$jobdir/out-$h" -j "$conc" --node "$h" --curve-secret "$keys/$h.key" \
    --curve-server "$keys/server.pub" --digest sha256
}
fetch() {
  spawn hub "job$job-fetch" "$trawl" fetch --source "$web_url/list.txt" --connect "ipc://$jobdir/links" \
    --curve-secret "$keys/server.key" --curve-server "$keys/server.pub"
}
ledger() { sqlite3 -readonly "$jobdir/state/ledger.sqlite" "$1" 2>/dev/null; }
done_count() { ledger "SELECT count(*) FROM links WHERE state=2" || echo 0; }
wait_done() { # wait_done N SECONDS: until the ledger has N done links
  local until=$((SECONDS + $2)) n
  while :; do
    n=$(done_count); [ -n "$n" ] || n=0
    [ "$n" -ge "$1" ] && return 0
    [ $SECONDS -ge $until ] && return 1
    sleep 0.1
  done
}
finish_job() { # waits for the vent and sink to exit, checks every file; stops the nodes given
  local until=$((SECONDS + 60)) pid
  while kill -0 "$vent_pid" 2>/dev/null || kill -0 "$sink_pid" 2>/dev/null; do
    [ $SECONDS -ge $until ] && { fail "job $job did not complete in 60 s ($(done_count) done)"; break; }
    sleep 0.1
  done
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
  local total done bad=0
  total=$(ledger "SELECT count(*) FROM links")
  done=$(done_count)
  [ "$total" = "$files" ] || fail "job $job: ledger has $total links, expected $files"
  [ "$done" = "$files" ] || fail "job $job: $done of $files done"
  # One pass: the ledger's (node, name, sha256) against the manifest and the SHA-256 of the file
  # actually in that node's --out.
  ledger "SELECT node, name, sha256 FROM links WHERE state=2" >"$jobdir/done.txt"
  local d
  for d in "$jobdir"/out-*; do
    [ -n "$(ls -A "$d")" ] || continue
    (cd "$d" && find . -maxdepth 1 -type f ! -name '.trawl-*' -printf '%f\0' | xargs -0 -r sha256sum) |
      sed "s|^\([0-9a-f]*\)  |${d##*/out-}\|\1\||"
  done >"$jobdir/actual.txt"
  bad=$(awk -F'\t' 'FILENAME == ARGV[1] { want[$1] = $3; next }
                    FILENAME == ARGV[2] { split($0, a, "|"); have[a[1] "|" a[3]] = a[2]; next }
                    { split($0, r, "|"); if (want[r[2]] != r[3] || have[r[1] "|" r[2]] != r[3]) n++ }
                    END { print n + 0 }' "$work/manifest.tsv" "$jobdir/actual.txt" "$jobdir/done.txt")
  [ $bad = 0 ] || fail "job $job: $bad files missing or with a wrong SHA-256 at the node the ledger names"
  ledger "SELECT node, count(*) FROM links WHERE state=2 GROUP BY node ORDER BY node" | tr '\n' ' ' >"$jobdir/shares"
  note "job $job: $done/$files done, $bad bad; per node: $(cat "$jobdir/shares")"
  for pid in "$@"; do
    local until2=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $until2 ]; do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null
  done
}
share() { ledger "SELECT count(*) FROM links WHERE state=2 AND node='$1'"; }
first_task_ms() { # ms from a node's process start to its first task (its log says)
  sed -n 's/.*first task after \([0-9]*\) ms.*/\1/p' "$1" | head -1
}

# Job 1: balance between two equal nodes; an intruder with an unauthorised key.
start_hub || exit 1
node n1; p1=$last
node n2; p2=$last
mkdir -p "$jobdir/out-x"
spawn x "job$job-x" "$trawl" download --connect "$tasks_ep" --sink "$results_ep" --out "$jobdir/out-x" \
  -j "$conc" --node x --curve-secret "$keys/x.key" --curve-server "$keys/server.pub" --digest sha256
px=$last
mkdir -p "$jobdir/out-y"
spawn x "job$job-y" "$trawl" download --connect "$tasks_ep" --sink "$results_ep" --out "$jobdir/out-y" \
  -j "$conc" --node y --digest sha256
py=$last
fetch
finish_job "$p1" "$p2" "$px" "$py"
s1=$(share n1) s2=$(share n2) sx=$(share x) sy=$(share y)
note "job 1 balance: n1 $s1, n2 $s2 of $files; intruder $sx"
for s in "$s1" "$s2"; do
  [ $((s * 100)) -ge $((files * 40)) ] && [ $((s * 100)) -le $((files * 60)) ] ||
    fail "job 1: a node did $s of $files (outside 40-60%)"
done
[ "$sx" = 0 ] || fail "job 1: the unauthorised node did $sx files"
[ "$sy" = 0 ] || fail "job 1: the keyless node did $sy files"
[ -z "$(ls -A "$jobdir/out-x")" ] || fail "job 1: the unauthorised node wrote files"
[ -z "$(ls -A "$jobdir/out-y")" ] || fail "job 1: the keyless node wrote files"
grep -q "refused a connection on the tasks socket" "$work/job1-vent.log" || fail "job 1: the vent did not log the keyless node"
grep -q "refused a connection from ${addr[x]}" "$work/job1-vent.log" ||
  fail "job 1: the vent did not log the intruder's refusal"
grep -q "refused a connection from ${addr[x]}" "$work/job1-sink.log" ||
  fail "job 1: the sink did not log the intruder's refusal"
refusals=$(grep -c "refused a connection" "$work/job1-vent.log")
note "job 1: vent logged $refusals refusal lines (rate-limited)"

# Job 2: n2 joins when half of the job is done.
start_hub || exit 1
node n1; p1=$last
fetch
wait_done $((files / 2)) 40 || fail "job 2: half the job not done in 40 s"
at_join=$(done_count)
node n2; p2=$last
finish_job "$p1" "$p2"
s2=$(share n2)
left=$((files - at_join))
note "job 2 late join: n2 joined at $at_join/$files done, did $s2 of the $left left ($((s2 * 100 / (left > 0 ? left : 1)))%)"
[ $((s2 * 100)) -ge $((left * 40)) ] || fail "job 2: the late node did $s2 of the $left left (< 40%)"

# Job 3: n2 killed with SIGKILL at ~30%, n3 added at ~50%.
start_hub || exit 1
node n1; p1=$last
node n2; p2=$last
fetch
wait_done $((files * 3 / 10)) 40 || fail "job 3: 30% not done in 40 s"
kill -KILL "$p2"
note "job 3: n2 (pid $p2) killed at $(done_count) done"
wait_done $((files / 2)) 40 || fail "job 3: 50% not done in 40 s"
node n3; p3=$last
note "job 3: n3 started at $(done_count) done"
finish_job "$p1" "$p3"
s3=$(share n3)
note "job 3: n3 did $s3 files; first task $(first_task_ms "$work/job3-n3.log") ms after its start"
[ "$s3" -ge $((files / 10)) ] || fail "job 3: the late node did only $s3 files"

if [ $failures -gt 0 ]; then echo "multihost: $failures failure(s)" >&2; exit 1; fi
echo "multihost: ok"
