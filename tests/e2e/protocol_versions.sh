#!/usr/bin/env bash
# Two real builds of trawl against each other. The script builds the `trawl` target a second time
# from the same source in its own build directory (VARIANTS_DIR, kept between runs, so only the
# first run pays for a full build; changing the protocol version rebuilds two files): once as
# "same" (version V.1, our protocol P) and once as "next" (version V.2, protocol P+1). Then one job
# on our ventilator and sink (the build under test):
#   - a "next" downloader and a "next" fetcher: each is refused, both sides log a line naming both
#     versions, the fetcher exits with an error at once, and the "next" node gets no task;
#   - a "same" fetcher and a "same" downloader beside one of ours: a different build and version
#     string, the same protocol: they work together and the job completes;
#   - every file checked against the fixture's manifest (name, size, SHA-256), every ledger row
#     names one of the two good nodes.
# Usage: protocol_versions.sh SOURCE_DIR TRAWL FIXTURE VARIANTS_DIR
set -uo pipefail
src=${1:?} trawl=${2:?} fixture=${3:?} variants=${4:?}
command -v sqlite3 >/dev/null || { echo "SKIP: no sqlite3 command (Debian package sqlite3)" >&2; exit 77; }

work=$(mktemp -d /tmp/trawl-versions.XXXXXX)
pids=()
failures=0
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "$failures" = 0 ] && [ -z "${TRAWL_KEEP_TMP:-}" ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
die() { fail "$*"; exit 1; }
wait_file() { # wait_file FILE SECONDS
  local i
  for ((i = 0; i < $2 * 20; i++)); do [ -s "$1" ] && return 0; sleep 0.05; done
  return 1
}
wait_pid() { # wait_pid PID SECONDS: the exit status, or 124 when it is still running
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
    sleep 0.05
  done
  return 124
}

ours=$("$trawl" --version)
read -r version protocol < <(sed -n 's/^trawl \([0-9.]*\) (protocol \([0-9]*\))$/\1 \2/p' <<<"$ours")
[ -n "${protocol:-}" ] || die "cannot read '$ours'"
next=$((protocol + 1))

# The second build: compiler defaults (-O0, no debug info: the quickest to compile; what is
# tested is the wire, not speed), no tests, only the trawl target; ccache when it is there.
build=$variants/build
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
variant() { # variant NAME PROTOCOL VERSION
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=None -DTRAWL_BUILD_TESTS=OFF \
    "${launcher[@]}" -DTRAWL_PROTOCOL_VERSION="$2" -DTRAWL_VERSION_STRING="$3" \
    >>"$variants/build.log" 2>&1 &&
    ninja -C "$build" -j "$(nproc)" trawl >>"$variants/build.log" 2>&1 &&
    cp "$build/trawl" "$variants/trawl-$1.new" && mv "$variants/trawl-$1.new" "$variants/trawl-$1" ||
    { tail -30 "$variants/build.log" >&2; die "building the '$1' variant failed (see $variants/build.log)"; }
}
mkdir -p "$variants"
: >"$variants/build.log"
t0=$(date +%s)
variant same "$protocol" "$version.1"
variant next "$next" "$version.2"
echo "second build (same, then next): $(($(date +%s) - t0)) s" >&2
same_bin=$variants/trawl-same next_bin=$variants/trawl-next
[ "$("$same_bin" --version)" = "trawl $version.1 (protocol $protocol)" ] || fail "same: $("$same_bin" --version)"
[ "$("$next_bin" --version)" = "trawl $version.2 (protocol $next)" ] || fail "next: $("$next_bin" --version)"
cmp -s "$same_bin" "$trawl" && fail "the 'same' build is our binary"

t0=$(date +%s)
"$fixture" --port 0 --corpus uniform --count 60 --size 3000 --delay-ms 20 \
  --ready-file "$work/fixture.ready" >"$work/fixture.log" 2>&1 &
pids+=($!)
wait_file "$work/fixture.ready" 10 || die "fixture did not start"
url=$(sed -n 's/^url=//p' "$work/fixture.ready")

# Our ventilator and sink, on ipc endpoints in the work directory.
links="ipc://$work/links" tasks="ipc://$work/tasks" acks="ipc://$work/acks" results="ipc://$work/results"
"$trawl" sink --bind "$results" --acks "$acks" --progress none --ready-file "$work/sink.ready" \
  >"$work/sink.out" 2>"$work/sink.err" &
sink_pid=$!
pids+=("$sink_pid")
wait_file "$work/sink.ready" 10 || die "sink did not start: $(cat "$work/sink.err")"
"$trawl" vent --links "$links" --bind "$tasks" --acks "$acks" --sink "$results" --state "$work/state" \
  --ready-file "$work/vent.ready" 2>"$work/vent.err" &
pids+=($!)
wait_file "$work/vent.ready" 10 || die "vent did not start: $(cat "$work/vent.err")"
start_node() { # start_node BIN NAME: a downloader with its own output directory
  mkdir -p "$work/out-$2"
  "$1" download --connect "$tasks" --sink "$results" --out "$work/out-$2" -j 4 --node "$2" \
    2>"$work/$2.err" &
  pids+=($!)
  eval "pid_${2//-/_}=$!"
}

# The "next" node first: it asks for work all through the job and must get none.
start_node "$next_bin" next-node
# The "next" fetcher: refused, it stops with an error naming both versions (not after its
# --linger-ms wait for a receipt that would never come).
"$next_bin" fetch --source "$url/list.txt" --connect "$links" 2>"$work/fetch-next.err" &
fetch_next=$!
pids+=("$fetch_next")
wait_pid "$fetch_next" 20; status=$?
[ "$status" != 0 ] && [ "$status" != 124 ] || fail "the next fetcher exited $status: $(cat "$work/fetch-next.err")"
grep -q "speaks protocol version $protocol (this build speaks $next): it refused the links" \
  "$work/fetch-next.err" || fail "next fetcher's log: $(cat "$work/fetch-next.err")"
n=$(sqlite3 -readonly "$work/state/ledger.sqlite" "SELECT count(*) FROM links" 2>/dev/null)
[ "${n:-0}" = 0 ] || fail "the ledger took $n links from the next fetcher"

# Ours and "same": one downloader each, then the "same" fetcher.
start_node "$trawl" our-node
start_node "$same_bin" same-node
"$same_bin" fetch --source "$url/list.txt" --connect "$links" 2>"$work/fetch-same.err" ||
  fail "the same fetcher failed: $(cat "$work/fetch-same.err")"
wait_pid "$sink_pid" 40; status=$?
[ "$status" = 0 ] || fail "sink exit $status: $(tail -5 "$work/sink.err")"
grep -q "60 done" "$work/sink.out" || fail "summary: $(cat "$work/sink.out")"

# Both sides of each refusal named both versions.
grep -q "on tasks .*protocol version $next (this build speaks $protocol)" "$work/vent.err" ||
  fail "vent did not log the next node: $(grep -i version "$work/vent.err" | head -3)"
grep -q "on links .*protocol version $next (this build speaks $protocol)" "$work/vent.err" ||
  fail "vent did not log the next fetcher"
lines=$(grep -c "protocol version $next" "$work/vent.err")
[ "$lines" -le 30 ] || fail "vent logged the other version $lines times (rate limit?)"
grep -q "the ventilator speaks protocol version $protocol (this build speaks $next): it refuses this node" \
  "$work/next-node.err" || fail "next node's log: $(tail -3 "$work/next-node.err")"

# No task reached the wrong node; the good ones shared the job; every byte as the fixture serves it.
ledger="$work/state/ledger.sqlite"
shares=$(sqlite3 -readonly "$ledger" "SELECT node, count(*) FROM links WHERE state=2 GROUP BY node" | tr '\n' ' ')
echo "per node: $shares" >&2
# (A running downloader keeps empty temporary files ready, .trawl-PID-N.part: those are not writes.)
[ -z "$(find "$work/out-next-node" -type f ! \( -name '.trawl-*.part' -empty \))" ] ||
  fail "the next node wrote files: $(find "$work/out-next-node" -type f ! \( -name '.trawl-*.part' -empty \) | head -3)"
bad=$(sqlite3 -readonly "$ledger" "SELECT count(*) FROM links WHERE node IS NOT NULL AND node NOT IN ('our-node','same-node')")
[ "$bad" = 0 ] || fail "$bad ledger rows name another node ($shares)"
for node in our-node same-node; do
  c=$(sqlite3 -readonly "$ledger" "SELECT count(*) FROM links WHERE state=2 AND node='$node'")
  [ "${c:-0}" -ge 1 ] || fail "$node did no file ($shares)"
done
exec 3<>"/dev/tcp/127.0.0.1/$(sed -E 's|.*:([0-9]+)$|\1|' <<<"$url")" || die "cannot reach the fixture"
printf 'GET /manifest.tsv HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
sed '1,/^\r$/d' <&3 >"$work/manifest.tsv"
exec 3<&-
[ "$(wc -l <"$work/manifest.tsv")" = 60 ] || die "manifest: $(head -3 "$work/manifest.tsv")"
checked=0
while IFS=$'\t' read -r name size sha; do
  row=$(sqlite3 -readonly "$ledger" "SELECT node, name FROM links WHERE state=2 AND url='$url/i/$name'")
  file="$work/out-${row%%|*}/${row#*|}"
  if [ ! -f "$file" ]; then fail "$name: no file ($row)"; continue; fi
  [ "$(stat -c %s "$file")" = "$size" ] && [ "$(sha256sum <"$file" | cut -d' ' -f1)" = "$sha" ] ||
    fail "$name: $file differs from the fixture's"
  checked=$((checked + 1))
done <"$work/manifest.tsv"
[ "$checked" = 60 ] || fail "$checked of 60 files checked"

for node in next_node our_node same_node; do
  p=$(eval echo "\$pid_$node")
  kill -TERM "$p"
  wait_pid "$p" 15; status=$?
  [ "$status" = 0 ] || fail "$node exit $status after SIGTERM"
done
echo "job with three builds: $(($(date +%s) - t0)) s" >&2
[ "$failures" = 0 ] || { echo "protocol_versions: $failures failure(s)" >&2; exit 1; }
echo "protocol_versions: ok"
