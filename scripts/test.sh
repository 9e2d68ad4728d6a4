#!/bin/bash
# The project's test command (README.md; .ci/run calls it after installing tools).
# Runs as root: the end-to-end tests create private mount namespaces. They never
# touch this machine's /etc or /var/lib (see tests/e2e/src/lib.rs).
#   ZT_FUZZ_SECONDS=0 scripts/test.sh    # skip the fuzzing pass
#   scripts/test.sh fuzz                 # only the fuzzing pass
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${ZT_FUZZ_SECONDS:-45}

step() { echo; echo "==> $*"; }

# The fuzz pass. Its output goes to a log: on success only the last lines
# (the run's statistics) are shown; on failure the whole log (the panic and
# libFuzzer's report with the input's bytes), each crashing input as base64
# and where it is kept, and the script fails with the fuzzer's status.
fuzz_snapshot_reader() {
    command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked (.ci/run does)" >&2; exit 1; }
    local work log artifacts status=0
    work=$(mktemp -d)
    trap "rm -rf '$work'" EXIT # expanded now: $work is local to this function
    log=target/fuzz-snapshot_reader.log
    artifacts=zt-snapshot/fuzz/artifacts/snapshot_reader # cargo-fuzz's default; kept, gitignored
    mkdir -p target "$artifacts"
    local before
    before=$(ls -A "$artifacts" | sort)
    RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir zt-snapshot/fuzz snapshot_reader \
        "$work" zt-snapshot/fuzz/corpus/snapshot_reader -- -max_total_time="$FUZZ_SECONDS" \
        >"$log" 2>&1 || status=$?
    if [ "$status" = 0 ]; then
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done )' "$log" || tail -3 "$log"
        return
    fi
    cat "$log"
    echo >&2
    echo "FUZZING FAILED (exit $status); full log: $log" >&2
    local f
    for f in $(comm -13 <(echo "$before") <(ls -A "$artifacts" | sort)); do
        echo "crashing input: $artifacts/$f (replay: cargo fuzz run --fuzz-dir zt-snapshot/fuzz snapshot_reader $artifacts/$f)" >&2
        echo "base64 (add it to zt-snapshot/fuzz/corpus/snapshot_reader/ once fixed):" >&2
        base64 -w 0 "$artifacts/$f" >&2
        echo >&2
    done
    exit "$status"
}

if [ "${1:-}" = fuzz ]; then # scripts/test.sh fuzz: only the fuzz pass
    FUZZ_SECONDS=${ZT_FUZZ_SECONDS:-45}
    [ "$FUZZ_SECONDS" != 0 ] || FUZZ_SECONDS=45
    step "fuzz the snapshot reader for ${FUZZ_SECONDS}s"
    fuzz_snapshot_reader
    exit 0
fi

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

if [ "$FUZZ_SECONDS" != 0 ]; then
    step "fuzz the snapshot reader for ${FUZZ_SECONDS}s (cargo-fuzz; RUSTC_BOOTSTRAP for its sanitizer flags on stable)"
    fuzz_snapshot_reader
fi
step "all tests passed"
