#!/bin/bash
# glibc NSS lookup benchmark: zt (libnss_zt.so.2) against glibc files and
# SSSD's memory cache, in one run, with the shared nssbench harness.
#
#   bash bench/nss/run.sh                  # build, prep, bench, summary, cleanup
#   REPS=3 BACKENDS="files sssd zt ztfiles" DATASETS="small large" bash bench/nss/run.sh
#
# What it does:
#  1. cargo build --release of nss_zt (libnss_zt.so) and snapshot-from-files;
#  2. copies ../shared/bench (or $NSSBENCH_SRC) into $NSSBENCH_DIR
#     (default /tmp/nssbench-zt) and patches the copies (patch_harness.py) to
#     add two backends: zt ("passwd: zt", the module alone) and ztfiles
#     ("passwd: files zt", the real install). /work/shared is never modified;
#  3. runs the harness: prep (downloads and unpacks sssd & co. without
#     installing them, generates the 30-user and 100k-user data sets, builds a
#     zt snapshot from each), bench (every backend in its own private mount
#     namespace with its own /etc and /var/lib copies; REPS runs; then the
#     syscall floor), summary, cleanup of the /etc copies;
#  4. prints zt's tables with ratios against files and SSSD (zt_tables.py),
#     also written to $NSSBENCH_DIR/results/zt-summary.md.
#
# The machine's own /etc and /var/lib are never touched: the harness hashes
# /etc/{passwd,group,nsswitch.conf,shadow} before and after and fails if they
# changed. Needs root (unshare -m, bind mounts), gcc, python3, cargo, and apt
# (valgrind, strace; apt-get download of the sssd packages).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WS=$(cd "$HERE/../.." && pwd)
SRC=${NSSBENCH_SRC:-$WS/../shared/bench}
export NSSBENCH_DIR=${NSSBENCH_DIR:-/tmp/nssbench-zt}
export BACKENDS=${BACKENDS:-"files sssd zt ztfiles"}
export DATASETS=${DATASETS:-"small large"}
export REPS=${REPS:-3}
export RES=${RES:-$NSSBENCH_DIR/results}
T=$NSSBENCH_DIR

[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (private mount namespaces)" >&2; exit 1; }
[ -f "$SRC/nssbench.c" ] || { echo "run.sh: no harness at $SRC (set NSSBENCH_SRC)" >&2; exit 1; }
command -v gcc >/dev/null || apt-get install -y gcc
# nssbench.c includes valgrind/callgrind.h; the harness's prep installs
# valgrind itself only after its own apt-get update, so make sure here
if ! command -v valgrind >/dev/null || ! command -v strace >/dev/null; then
    apt-get update -qq || true
    apt-get install -y valgrind strace
fi

echo "== building libnss_zt.so and snapshot-from-files (release)"
(cd "$WS" && cargo build --release -p nss_zt --lib -p zt-bench --bin snapshot-from-files)
TARGET_DIR=$(cd "$WS" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
# (both may be given, e.g. to compare another build of the module)
export ZT_NSS_LIB=${ZT_NSS_LIB:-$TARGET_DIR/release/libnss_zt.so}
export ZT_SNAPSHOT_FROM_FILES=${ZT_SNAPSHOT_FROM_FILES:-$TARGET_DIR/release/snapshot-from-files}
[ -f "$ZT_NSS_LIB" ] && [ -x "$ZT_SNAPSHOT_FROM_FILES" ]

echo "== harness copy in $T"
mkdir -p "$T"
# fresh copies of the harness files on every run (downloads and data stay)
for f in README.md floor.c gen_data.py inner.sh nssbench.c run.sh summarize.py; do
    install -m 755 "$SRC/$f" "$T/$f"
done
python3 "$HERE/patch_harness.py" "$T"
rm -rf "$T/cfg"   # configs are rebuilt by prep (with this run's snapshots)

bash "$T/run.sh" prep
{
    echo "zt $(cd "$WS" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$WS" && git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "$(rustc --version)"
    echo "libnss_zt.so.2 $(stat -c %s "$ZT_NSS_LIB") bytes"
} >>"$RES/versions.txt"
bash "$T/run.sh" bench
bash "$T/run.sh" summary >/dev/null
bash "$T/run.sh" cleanup
python3 "$HERE/zt_tables.py" "$T" "$RES" | tee "$RES/zt-summary.md"
echo "full harness tables: $RES/summary.md; zt tables: $RES/zt-summary.md"
