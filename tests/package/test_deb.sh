#!/usr/bin/env bash
# Builds the Debian package from a built tree and checks it: file name, contents (binary,
# trawl-pipeline, systemd unit, man pages, completion, examples; no dev-only launch/demo), control
# fields (Depends, from dpkg-shlibdeps, names the package of every library the binary needs),
# that apt on this Debian host can satisfy it, and that the unpacked files work: `trawl
# --version`, the example configs pass `trawl config check`, and trawl-pipeline downloads a small
# job from the fixture server.
# A clean-root install (debootstrap) needs a Debian mirror, which CI does not reach in a minute or
# two; see docs/OPERATIONS.md, "Installing".
# Usage: test_deb.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
tmp=$(mktemp -d)
fixture_pid=""
cleanup() {
  [ -n "$fixture_pid" ] && kill "$fixture_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
arch=$(dpkg --print-architecture)
(cd "$build" && cpack -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; exit 1; }
deb="$tmp/pkg/trawl_${version}_${arch}.deb"
[ -f "$deb" ] || { ls -l "$tmp/pkg"; bad "no $deb"; exit 1; }
echo "package: $(basename "$deb"), $(stat -c %s "$deb") bytes"

# Contents.
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' >"$tmp/contents"
for f in /usr/bin/trawl /usr/bin/trawl-pipeline /usr/lib/trawl/pipeline \
         /usr/lib/systemd/system/trawl-download@.service \
         /usr/share/bash-completion/completions/trawl \
         /usr/share/man/man1/trawl.1.gz /usr/share/man/man1/trawl-fetch.1.gz \
         /usr/share/man/man1/trawl-vent.1.gz /usr/share/man/man1/trawl-download.1.gz \
         /usr/share/man/man1/trawl-sink.1.gz /usr/share/man/man1/trawl-config.1.gz \
         /usr/share/doc/trawl/OPERATIONS.md /usr/share/doc/trawl/CHANGELOG.md \
         /usr/share/doc/trawl/examples/trawl.conf /usr/share/doc/trawl/examples/download-example.conf; do
  grep -qxF "$f" "$tmp/contents" || bad "$f is not in the package"
done
grep -q 'demo' "$tmp/contents" && bad "the dev-only launch/demo is in the package"
grep -qE '/(include|tests?)/' "$tmp/contents" && bad "headers or tests in the package"

# Control fields.
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
# Every shared library the binary names (DT_NEEDED) comes from a package that Depends names, or
# from the package itself (the stand-ins, when trawl uses them as shared libraries).
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/trawl >"$tmp/trawl.bin"
mapfile -t needed < <(readelf -d "$tmp/trawl.bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
# At least libc (the parse worked); the static build names libm, libc and the dynamic linker.
printf '%s\n' "${needed[@]}" | grep -qxF libc.so.6 ||
  bad "the packaged binary does not name libc.so.6 (read: ${needed[*]})"
for so in "${needed[@]}"; do
  grep -qE "^/usr/lib/trawl/$so\$" "$tmp/contents" && continue
  path=$(ldconfig -p | awk -v so="$so" '$1 == so && /x86-64/ && !found { print $NF; found = 1 }')
  [ -n "$path" ] || { bad "$so (named by trawl) is not installed here"; continue; }
  # dpkg knows a file by the path its package installed: the symlink's, or (merged /usr) the
  # target's under /usr/lib, or the same under /lib.
  pkg=""
  for p in "$path" "$(readlink -f "$path")" "${path#/usr}"; do
    pkg=$(dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$pkg" ] && break
  done
  [ -n "$pkg" ] || { bad "no package has $path ($so)"; continue; }
  # The package, or a name it provides (libspdlog1.10 provides libspdlog1.10-fmt9).
  names=$(printf '%s\n' "$pkg"; dpkg-query -W -f='${Provides}' "$pkg" | sed 's/, /\n/g' | awk '{print $1}')
  sed 's/, /\n/g' <<<"$depends" | awk '{print $1}' | grep -qxF -f <(printf '%s\n' "$names") ||
    bad "Depends names neither $pkg (which has $so) nor a name it provides"
done
sed 's/, /\n/g' <<<"$depends" | awk '{print $1}' | grep -qxF libc6 || bad "Depends does not name libc6"
[ "$(dpkg-deb -f "$deb" Section)" = net ] || bad "Section is not net"
[ -n "$(dpkg-deb -f "$deb" Maintainer)" ] || bad "no Maintainer"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || bad "Version is not $version"

# Would apt install it here (Depends satisfiable on this Debian release)? Simulation only.
if apt-get -s -qq install "$deb" >"$tmp/apt.log" 2>&1; then
  echo "apt-get -s install: ok"
else
  cat "$tmp/apt.log"; bad "apt-get cannot install the package on this host"
fi

# The unpacked files, run with this host's libraries.
root="$tmp/root"
dpkg-deb -x "$deb" "$root"
# The stand-ins for libraries trawl never uses (cmake/stand-ins.cmake), when trawl uses them as
# shared libraries (names them in DT_NEEDED): packaged in /usr/lib/trawl and loaded from there
# (trawl's RUNPATH is $ORIGIN/../lib/trawl). Linked into the binary, none is in the package.
LD_TRACE_LOADED_OBJECTS=1 "$root/usr/bin/trawl" >"$tmp/loaded" 2>&1 || bad "tracing trawl's libraries failed"
for f in "$build"/stand-ins/lib*.so.*; do
  [ -e "$f" ] || continue
  so=$(basename "$f")
  if printf '%s\n' "${needed[@]}" | grep -qxF "$so"; then
    grep -qxF "/usr/lib/trawl/$so" "$tmp/contents" || bad "the stand-in $so is not in the package"
    grep -qE "^\s*$so => $root/usr/bin/\.\./lib/trawl/$so " "$tmp/loaded" ||
      bad "the unpacked trawl does not load $so from its lib/trawl: $(grep "$so" "$tmp/loaded")"
  else
    grep -q "/usr/lib/trawl/$so" "$tmp/contents" && bad "$so is packaged, but trawl does not use it"
  fi
done
got=$("$root/usr/bin/trawl" --version)
[[ "$got" =~ ^trawl\ ${version//./\\.}\ \(protocol\ [0-9]+\)$ ]] || bad "trawl --version said '$got'"
for sub in fetch vent download sink; do
  [ "$("$root/usr/bin/trawl" "$sub" --version)" = "$got" ] || bad "trawl $sub --version differs"
done
file -b "$root/usr/bin/trawl" | grep -q 'stripped' && ! file -b "$root/usr/bin/trawl" | grep -q 'not stripped' ||
  bad "the packaged binary is not stripped"
for conf in "$root"/usr/share/doc/trawl/examples/*.conf; do
  "$root/usr/bin/trawl" config check "$conf" >/dev/null || bad "example $(basename "$conf") fails config check"
done
grep -q '^ExecStart=/usr/bin/trawl download --config /etc/trawl/download-%i.conf$' \
  "$root/usr/lib/systemd/system/trawl-download@.service" || bad "unit's ExecStart is not /usr/bin/trawl"
zcat "$root/usr/share/man/man1/trawl-download.1.gz" | grep -q '^\.TH TRAWL\\-DOWNLOAD 1' || bad "bad man page"
bash -c "source '$root/usr/share/bash-completion/completions/trawl' && complete -p trawl" >/dev/null ||
  bad "the completion does not load"
# Read whole: grep -q stops at its match, and the writer of a longer text would die of SIGPIPE.
pipeline_help=$("$root/usr/bin/trawl-pipeline" --help) || bad "trawl-pipeline --help failed"
grep -q -- '--source' <<<"$pipeline_help" || bad "trawl-pipeline --help"

# A small job through the installed trawl-pipeline, from the fixture server when it was built.
if [ -x "$build/trawl-fixture" ]; then
  "$build/trawl-fixture" --corpus uniform --count 20 --size 4000 --ready-file "$tmp/fixture.ready" \
    >/dev/null 2>&1 &
  fixture_pid=$!
  for _ in $(seq 100); do [ -s "$tmp/fixture.ready" ] && break; sleep 0.1; done
  url=$(sed -n 's/^url=//p' "$tmp/fixture.ready")
  [ -n "$url" ] || bad "fixture did not start"
  if timeout 60 "$root/usr/bin/trawl-pipeline" --source "$url/list.txt" --out "$tmp/out" \
       --downloaders 1 --concurrency 8 --progress none >"$tmp/summary" 2>"$tmp/pipeline.log"; then
    n=$(find "$tmp/out" -maxdepth 1 -type f ! -name ".*" | wc -l)
    [ "$n" -eq 20 ] || bad "the installed pipeline downloaded $n files, want 20"
    echo "installed trawl-pipeline: $n files downloaded"
  else
    tail -20 "$tmp/pipeline.log"; bad "the installed trawl-pipeline failed"
  fi
  kill "$fixture_pid" 2>/dev/null || true
  wait "$fixture_pid" 2>/dev/null || true
  fixture_pid=""
fi

[ "$fail" -eq 0 ] && echo "package checks: ok"
exit "$fail"
