#!/bin/bash
# First-lookup cost of the packaged libnss_zt.so.2 in a fresh process, beside
# SSSD's module (libnss-sss from Debian) and glibc's files alone, in one run:
# the .deb and libnss-sss are installed into a throwaway copy of the test
# chroot (tests/deb/make-chroot.sh), a file directory is synced, and
# first_lookup.c times one getpwnam() from inside each of RUNS new processes
# per configuration. Prints the median and p90 in microseconds.
#   bash bench/deb/first-lookup.sh [DEB]      (RUNS=300 by default)
# Root; network to Debian's mirror (libnss-sss). The machine's /etc is never
# touched: everything happens in the chroot, in a private mount namespace.
# SSSD's daemon is not running: its module's first lookup is the dlopen, a
# look for its memory cache and a failed socket connect (UNAVAIL), a lower
# bound of what it costs with sssd up.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEB=${1:-$(ls -t dist/zt_*_amd64.deb | head -1)}
RUNS=${RUNS:-300}
TARBALL=/var/tmp/zt-deb-chroot-bookworm.tar
tests/deb/make-chroot.sh "$TARBALL"
R=$(mktemp -d /var/tmp/zt-bench.XXXXXX)
trap 'umount -l "$R/proc" 2>/dev/null || true; rm -rf "$R"' EXIT
tar -C "$R" -xf "$TARBALL"
gcc -O2 -o "$R/usr/local/bin/first_lookup" bench/deb/first_lookup.c
cp "$DEB" "$R/tmp/zt.deb"
cp packaging/examples/directory.json "$R/tmp/directory.json"
unshare -m --propagation private bash -s "$R" "$RUNS" <<'INNER'
set -euo pipefail
R=$1 RUNS=$2
mount -t proc proc "$R/proc"
in_root() { chroot "$R" env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c "$1"; }
in_root 'apt-get update -qq && apt-get install -y -qq /tmp/zt.deb libnss-sss >/dev/null 2>&1'
in_root 'install -m 0644 /tmp/directory.json /etc/zt/directory.json && zt-agent sync --once >/dev/null'
measure() { # measure LABEL PASSWD-LINE NAME
    sed -i -E "s/^passwd:.*/passwd:         $2/" "$R/etc/nsswitch.conf"
    in_root "first_lookup $3" >/dev/null || true # warm the page cache
    for _ in $(seq "$RUNS"); do in_root "first_lookup $3" || true; done |
        sort -n | awk -v label="$1" '{ v[NR] = $1 } END {
            printf "%-44s median %7.1f us   p90 %7.1f us\n", label, v[int(NR/2)+1]/1000, v[int(NR*0.9)]/1000 }'
}
echo "first getpwnam() in a new process, $RUNS runs each (bookworm chroot, $(nproc) CPUs)"
measure "files: root (hit, no module loaded)" "files" root
measure "files: a miss" "files" nobody-such
measure "files zt: alice (files miss, zt hit)" "files zt" alice
measure "files zt: a miss in both" "files zt" nobody-such
measure "files sss: a miss (sssd not running)" "files sss" nobody-such
measure "zt alone: alice" "zt" alice
INNER
