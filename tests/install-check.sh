#!/usr/bin/env bash
# `meson install` into a scratch DESTDIR, then everything a user or a packager
# relies on from it: examples/map.c built out of tree with nothing but
# `pkg-config forkpool` and linked against the SHARED library, which it runs
# with; the soname, the exported symbols (exactly the public headers' functions)
# and the version macros against fp_version(); both binaries and their
# --version; the man pages; the systemd unit, its paths and its hardening
# (under 3.0 by systemd-analyze when it is installed); docs, examples,
# licence and the Python sources.
#   tests/install-check.sh BUILDDIR SRCDIR
set -euo pipefail
builddir=$1
srcdir=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
fail() { echo "install-check: $*" >&2; exit 1; }
need() { [ -e "$1" ] || fail "not installed: ${1#"$root"}"; }

meson install -C "$builddir" --no-rebuild --destdir "$root" >/dev/null
version=$(meson introspect --projectinfo "$builddir" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')

# pkg-config: forkpool.pc, and libforkpool.pc as its alias. The .pc files name
# the real prefix; --define-variable moves them into the DESTDIR.
pc=$(find "$root" -name forkpool.pc | head -n 1)
[ -n "$pc" ] || fail "no forkpool.pc installed"
need "$(dirname "$pc")/libforkpool.pc"
prefix=$(sed -n 's/^prefix=//p' "$pc")
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
pc_flags() { pkg-config --define-variable=prefix="$root$prefix" "$@"; }
[ "$(pc_flags --modversion forkpool)" = "$version" ] || fail "forkpool.pc says $(pc_flags --modversion forkpool), meson.build $version"
[ "$(pc_flags --libs forkpool)" = "$(pc_flags --libs libforkpool)" ] || fail "libforkpool.pc differs from forkpool.pc"
libdir=$(pc_flags --variable=libdir forkpool)

# The shared library: a soname from the major version, the real file behind it.
so=$libdir/libforkpool.so
need "$so"
need "$libdir/libforkpool.so.${version%%.*}"
need "$libdir/libforkpool.so.$version"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libforkpool.so.${version%%.*}" ] || fail "soname is '$soname', want libforkpool.so.${version%%.*}"
# It exports exactly the functions <forkpool.h> and <forkpool/loop.h> declare,
# less their static inline ones (fp_io_active...), which have no symbol.
headers=$(printf '#include <forkpool.h>\n#include <forkpool/loop.h>\n' | cc -E $(pc_flags --cflags forkpool) -x c -)
inline=$(echo "$headers" | grep -oE 'static inline [^(]*\bfp_[a-z0-9_]+[[:space:]]*\(' |
	grep -oE 'fp_[a-z0-9_]+[[:space:]]*\($' | sed 's/[[:space:]]*(//' | sort -u)
declared=$(echo "$headers" | grep -oE '\bfp_[a-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:]]*(//' | sort -u |
	comm -23 - <(echo "$inline"))
exported=$(nm -D --defined-only "$so" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort -u)
if [ "$declared" != "$exported" ]; then
	diff <(echo "$declared") <(echo "$exported") | sed 's/^</  declared, not exported:/; s/^>/  exported, not declared:/' >&2 || true
	fail "libforkpool.so's symbols and <forkpool.h>, <forkpool/loop.h> differ (include/libforkpool.map lists them)"
fi

# examples/map.c, out of tree, against the installed headers and shared library.
# shellcheck disable=SC2046
cc "$srcdir/examples/map.c" $(pc_flags --cflags --libs forkpool) -o "$root/example-map"
readelf -d "$root/example-map" | grep -q "NEEDED.*\[libforkpool.so.${version%%.*}\]" ||
	fail "example-map is not linked against libforkpool.so.${version%%.*}"
resolved=$(LD_LIBRARY_PATH=$libdir ldd "$root/example-map" | awk '/libforkpool/ { print $3 }')
[ "$resolved" -ef "$libdir/libforkpool.so.${version%%.*}" ] || fail "example-map finds libforkpool at '$resolved', not in $libdir"
LD_LIBRARY_PATH=$libdir "$root/example-map" 2000 | grep -q 'sum of squares: .* (correct)' ||
	fail "example-map built against the installed library gave a wrong sum"

# The version macros agree with meson.build, and with the library's fp_version().
cat > "$root/version.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <forkpool.h>
#if FP_VERSION_NUMBER != FP_VERSION_ENCODE(FP_VERSION_MAJOR, FP_VERSION_MINOR, FP_VERSION_PATCH)
#error FP_VERSION_NUMBER
#endif
int main(void)
{
	printf("%s %d.%d.%d %ld %s\n", FP_VERSION, FP_VERSION_MAJOR, FP_VERSION_MINOR,
	       FP_VERSION_PATCH, (long)FP_VERSION_NUMBER, fp_version());
	return strcmp(FP_VERSION, fp_version()) != 0;
}
C
# shellcheck disable=SC2046
cc "$root/version.c" $(pc_flags --cflags --libs forkpool) -o "$root/version"
IFS=. read -r maj min pat <<<"$version"
want="$version $maj.$min.$pat $((maj * 1000000 + min * 1000 + pat)) $version"
got=$(LD_LIBRARY_PATH=$libdir "$root/version") || fail "fp_version() '$got' is not FP_VERSION"
[ "$got" = "$want" ] || fail "version macros and fp_version() say '$got', want '$want'"

# Binaries, headers, man pages, docs, examples, the licence, the Python sources.
for b in forkpoold forkpool; do
	need "$root$prefix/bin/$b"
	[ "$("$root$prefix/bin/$b" --version)" = "$b $version" ] || fail "$b --version does not say $version"
done
need "$root$prefix/include/forkpool.h"
need "$root$prefix/include/forkpool/task.h"
need "$root$prefix/include/forkpool/loop.h"
need "$root$prefix/include/forkpool/version.h"
if command -v scdoc >/dev/null; then
	for m in man8/forkpoold.8 man1/forkpool.1; do
		need "$root$prefix/share/man/$m"
		grep -q '^\.TH' "$root$prefix/share/man/$m" || fail "share/man/$m is not a man page"
	done
else
	echo "install-check: scdoc not installed: man pages not checked" >&2
fi
doc=$root$prefix/share/doc/forkpool
for f in README.md LICENSE ARCHITECTURE.md examples/map.c examples/exec/upper.sh; do
	need "$doc/$f"
done
need "$root$prefix/share/forkpool/python/forkpool_worker.py"

# The systemd unit: installed, pointing at the installed forkpoold and docs,
# and hardened.
unit=$(find "$root" -name forkpoold.service | head -n 1)
[ -n "$unit" ] || fail "no forkpoold.service installed"
grep -q "^ExecStart=$prefix/bin/forkpoold" "$unit" || fail "the unit's ExecStart is not $prefix/bin/forkpoold"
grep -q "^StateDirectory=forkpool$" "$unit" || fail "the unit has no StateDirectory=forkpool"
if command -v systemd-analyze >/dev/null; then
	exposure=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1 |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure for the unit"
	awk -v e="$exposure" 'BEGIN { exit !(e < 3.0) }' ||
		fail "the unit's exposure is $exposure (systemd-analyze security): it must stay under 3.0"
	echo "install-check: forkpoold.service exposure $exposure"
else
	echo "install-check: systemd-analyze not installed: the unit's hardening not rated" >&2
fi
echo "install-check: $version installed whole; example-map built with pkg-config forkpool runs on libforkpool.so.${version%%.*}"
