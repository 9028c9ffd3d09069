#!/usr/bin/env bash
# Installs the build into a scratch root and builds examples/map.c against
# it with nothing but `pkg-config --cflags --libs libforkpool`, then runs it:
# the installed headers, library and .pc file are enough to embed forkpool.
set -euo pipefail
builddir=$1
srcdir=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
meson install -C "$builddir" --no-rebuild --destdir "$root" >/dev/null
pc=$(dirname "$(find "$root" -name libforkpool.pc | head -n 1)")
[ -n "$pc" ] || { echo "install-check: no libforkpool.pc installed" >&2; exit 1; }
export PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$root
# shellcheck disable=SC2046
cc "$srcdir/examples/map.c" $(pkg-config --cflags --libs libforkpool) -o "$root/example-map"
"$root/example-map" 2000 | grep -q 'sum of squares: .* (correct)'
# The client is installed beside the daemon.
for b in forkpoold forkpool; do
	[ -x "$(find "$root" -path "*/bin/$b" | head -n 1)" ] || { echo "install-check: no bin/$b installed" >&2; exit 1; }
done
echo "install-check: installed library builds and runs the example"
