#!/usr/bin/env bash
# launch/add-node --deb: the package that CPack builds is copied to the host and installed there
# when trawl is missing or older, and not when the host's trawl is current; the node then runs
# the installed /usr/bin/trawl and does real work for a running launch/pipeline --listen.
# As in tests/netns/add_node.sh there is no ssh server here: a fake `ssh` runs the command with
# bash, HOME set to a directory per host. Each host's `apt-get` is a stand-in that checks it is
# asked to install one .deb file, keeps a copy of the bytes it got, and unpacks the package into
# the host's own root (HOME/root), whose usr/bin is on the host's PATH; the libraries are this
# machine's. A real apt-get into a clean Debian root is bench/clean_host_node.sh (root, network
# to a Debian mirror).
# Usage: add_node_deb.sh BUILD_DIR FIXTURE_BIN PIPELINE ADD_NODE
set -uo pipefail
build=$(cd "${1:?}" && pwd) fixture=${2:?} pipeline=${3:?} add_node=${4:?}
command -v sqlite3 >/dev/null || { echo "SKIP: no sqlite3 command (Debian package sqlite3)" >&2; exit 77; }
command -v dpkg-deb >/dev/null || { echo "SKIP: no dpkg-deb" >&2; exit 77; }
trawl=$build/trawl

source "$(dirname "${BASH_SOURCE[0]}")/../support/add_node_harness.sh"
harness_init trawl-addnode-deb

# The package, as CI builds it.
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
(cd "$build" && cpack -G DEB -B "$work/pkg" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/pkg/trawl_"${version}"_*.deb 2>/dev/null | head -1)
[ -f "$deb" ] || { fail "cpack made no trawl_${version}_*.deb"; exit 1; }
deb_sha=$(sha256sum <"$deb" | cut -d' ' -f1)

mkdir -p "$work/shim"
fake_ssh '$h/root/usr/bin:'"$work/shim"
# The host's apt-get: `apt-get install -y -qq FILE.deb` and nothing else.
cat >"$work/shim/apt-get" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
echo "apt-get $*" >>"$HOME/apt.log"
[ "$1" = install ] && [ "${2:-}" = -y ] || { echo "apt-get stand-in: unexpected '$*'" >&2; exit 100; }
f=${!#}
case "$f" in /*.deb) ;; *) echo "apt-get stand-in: '$f' is not a path to a .deb" >&2; exit 100 ;; esac
[ "$(dpkg-deb -f "$f" Package)" = trawl ] || { echo "apt-get stand-in: not the trawl package" >&2; exit 100; }
sha256sum <"$f" | cut -d' ' -f1 >>"$HOME/installed.sha256"
dpkg-deb -x "$f" "$HOME/root"
EOF
chmod +x "$work/shim/apt-get"

start_fixture 200
# A slow job: one local downloader with 2 transfers, 200 files of 100 ms: ~10 s alone.
start_pipeline

# hostD has no trawl: the package is copied and installed, the node runs the installed binary.
if ! "$add_node" hostD --run-dir "$work/run" --deb "$deb" --trawl "$trawl" -j 8 --out '~/files' \
  >"$work/addD.out" 2>"$work/addD.err"; then
  fail "add-node --deb hostD: $(cat "$work/addD.err")"
fi
grep -q "hostD has no trawl; installing $version" "$work/addD.err" || fail "hostD: $(cat "$work/addD.err")"
[ "$(cat "$work/hosts/hostD/installed.sha256" 2>/dev/null)" = "$deb_sha" ] ||
  fail "hostD: the package was not installed once with the bytes of $deb"
cmp -s <(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/trawl) "$work/hosts/hostD/root/usr/bin/trawl" ||
  fail "hostD: its usr/bin/trawl is not the packaged one"
[ ! -e "$work/hosts/hostD/.local/bin/trawl" ] || fail "hostD: the binary was copied as well as the package"
grep -q "hostD: .*$work/hosts/hostD/root/usr/bin/trawl.* download" "$work/ssh.log" ||
  fail "hostD: the node was not started from the installed trawl: $(grep download "$work/ssh.log")"

# hostD again: current, no copy, no install.
"$add_node" hostD --run-dir "$work/run" --deb "$deb" --trawl "$trawl" --node hostD2 --out '~/files2' \
  >/dev/null 2>"$work/addD2.err" || fail "add-node hostD again: $(cat "$work/addD2.err")"
grep -q "hostD has trawl $version (ours $version): no install" "$work/addD2.err" || fail "hostD again: $(cat "$work/addD2.err")"
[ "$(wc -l <"$work/hosts/hostD/installed.sha256")" = 1 ] || fail "hostD: installed twice"

# hostE has an older trawl: upgraded from the package (which then comes first on its PATH).
mkdir -p "$work/hosts/hostE/.local/bin"
printf '#!/bin/sh\necho "trawl 0.0.1 (protocol %s)"\n' "$("$trawl" --version | sed -n 's/.*(protocol \([0-9]*\)).*/\1/p')" \
  >"$work/hosts/hostE/.local/bin/trawl"
chmod +x "$work/hosts/hostE/.local/bin/trawl"
"$add_node" hostE --run-dir "$work/run" --deb "$deb" --trawl "$trawl" >/dev/null 2>"$work/addE.err" ||
  fail "add-node --deb hostE: $(cat "$work/addE.err")"
grep -q "hostE has trawl 0.0.1; installing $version" "$work/addE.err" || fail "hostE: $(cat "$work/addE.err")"
[ "$(cat "$work/hosts/hostE/installed.sha256" 2>/dev/null)" = "$deb_sha" ] || fail "hostE: not installed from the package"

# A --deb that is not there: a clear error, nothing started.
"$add_node" hostF --run-dir "$work/run" --deb "$work/nope.deb" --trawl "$trawl" >/dev/null 2>"$work/addF.err" &&
  fail "add-node with a missing --deb succeeded"
grep -q "no such file" "$work/addF.err" || fail "hostF: $(cat "$work/addF.err")"

check_node_share hostD 20 "$work/hosts/hostD/files" 200
echo "package $(basename "$deb"), $(stat -c %s "$deb") bytes; per node: $shares" >&2

[ $failures = 0 ] || { echo "add_node_deb: $failures failure(s)" >&2; exit 1; }
echo "add_node_deb: ok"
