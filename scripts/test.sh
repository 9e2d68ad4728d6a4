#!/bin/bash
# The project's test command (README.md; .ci/run calls it after installing tools).
# Runs as root: the end-to-end tests create private mount namespaces. They never
# touch this machine's /etc or /var/lib (see tests/e2e/src/lib.rs).
#   ZT_FUZZ_SECONDS=0 scripts/test.sh    # skip the fuzzing pass
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${ZT_FUZZ_SECONDS:-45}

step() { echo; echo "==> $*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "build (the end-to-end tests drive the built zt-agent and libnss_zt.so)"
cargo build --workspace

step "unit, property and end-to-end tests"
cargo test --workspace

step "symbol baseline: the module must load on glibc 2.34+ (Ubuntu 22.04 and later)"
newest=$(objdump -T target/debug/libnss_zt.so | grep -o 'GLIBC_[0-9.]*' | sort -t. -k2,2n -u | tail -1)
echo "newest glibc symbol: $newest"
case $newest in GLIBC_2.[0-9] | GLIBC_2.[12][0-9] | GLIBC_2.3[0-4]) ;; *) echo "libnss_zt.so needs $newest: too new" >&2; exit 1 ;; esac
soname=$(objdump -p target/debug/libnss_zt.so | awk '/SONAME/ {print $2}')
[ "$soname" = libnss_zt.so.2 ] || { echo "SONAME is $soname, not libnss_zt.so.2" >&2; exit 1; }

# One cargo-fuzz run. On success only the last lines are shown; on failure the
# whole log (the panic and the crashing input) is printed, and the crashing
# input stays in <fuzz dir>/artifacts/<target>/ for the corpus.
fuzz() {
    local fuzz_dir=$1 target=$2 seconds=$3 log
    log="$work/$target.log"
    if RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" \
        "$work/$target" "$fuzz_dir/corpus/$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
        tail -3 "$log"
    else
        cat "$log"
        echo "fuzzing $target failed: the crashing input is in $fuzz_dir/artifacts/$target/" >&2
        exit 1
    fi
}

if [ "$FUZZ_SECONDS" != 0 ]; then
    command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked (.ci/run does)" >&2; exit 1; }
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/snapshot_reader" "$work/directory_resolve"
    step "fuzz the snapshot reader for ${FUZZ_SECONDS}s (cargo-fuzz; RUSTC_BOOTSTRAP for its sanitizer flags on stable)"
    fuzz zt-snapshot/fuzz snapshot_reader "$FUZZ_SECONDS"
    step "fuzz directory parse + resolve for ${ZT_FUZZ_DIRECTORY_SECONDS:-20}s"
    fuzz zt-agent/fuzz directory_resolve "${ZT_FUZZ_DIRECTORY_SECONDS:-20}"
fi
step "all tests passed"
