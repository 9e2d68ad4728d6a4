#!/bin/bash
# The project's test command (README.md; .ci/run calls it after installing tools).
# Runs as root: the end-to-end tests create private mount namespaces. They never
# touch this machine's /etc or /var/lib (see tests/e2e/src/lib.rs).
#   ZT_FUZZ_SECONDS=0 scripts/test.sh    # skip the fuzzing passes
#   scripts/test.sh fuzz                 # only the fuzzing passes
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${ZT_FUZZ_SECONDS:-45}
FUZZ_DIRECTORY_SECONDS=${ZT_FUZZ_DIRECTORY_SECONDS:-20}

step() { echo; echo "==> $*"; }

# One cargo-fuzz pass: fuzz DIR TARGET SECONDS. Its output goes to a log: on
# success only the run's statistics are shown; on failure the whole log (the
# panic and libFuzzer's report), each crashing input as base64 and where it is
# kept, and the script fails with the fuzzer's status.
fuzz() {
    local fuzz_dir=$1 target=$2 seconds=$3
    command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz --locked (.ci/run does)" >&2; exit 1; }
    local work log artifacts status=0 before f
    work=$(mktemp -d)
    log=target/fuzz-$target.log
    artifacts=$fuzz_dir/artifacts/$target # cargo-fuzz's default; kept, gitignored
    mkdir -p target "$artifacts"
    before=$(ls -A "$artifacts" | sort)
    RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" \
        "$work" "$fuzz_dir/corpus/$target" -- -max_total_time="$seconds" \
        >"$log" 2>&1 || status=$?
    rm -rf "$work"
    if [ "$status" = 0 ]; then
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done )' "$log" || tail -3 "$log"
        return
    fi
    cat "$log"
    echo >&2
    echo "FUZZING $target FAILED (exit $status); full log: $log" >&2
    for f in $(comm -13 <(echo "$before") <(ls -A "$artifacts" | sort)); do
        echo "crashing input: $artifacts/$f (replay: cargo fuzz run --fuzz-dir $fuzz_dir $target $artifacts/$f)" >&2
        echo "base64 (add it to $fuzz_dir/corpus/$target/ once fixed):" >&2
        base64 -w 0 "$artifacts/$f" >&2
        echo >&2
    done
    exit "$status"
}

fuzz_all() {
    step "fuzz the snapshot reader for ${FUZZ_SECONDS}s (cargo-fuzz; RUSTC_BOOTSTRAP for its sanitizer flags on stable)"
    fuzz zt-snapshot/fuzz snapshot_reader "$FUZZ_SECONDS"
    step "fuzz directory parse + resolve for ${FUZZ_DIRECTORY_SECONDS}s"
    fuzz zt-agent/fuzz directory_resolve "$FUZZ_DIRECTORY_SECONDS"
}

if [ "${1:-}" = fuzz ]; then # scripts/test.sh fuzz: only the fuzz passes
    [ "$FUZZ_SECONDS" != 0 ] || FUZZ_SECONDS=45
    fuzz_all
    exit 0
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "build (the end-to-end tests drive the built zt-agent and libnss_zt.so)"
cargo build --workspace

step "unit, property and end-to-end tests"
# the OIDC provider the PAM tests run (npm oidc-provider, pinned by package-lock.json)
[ -d tests/e2e/oidc-provider/node_modules/oidc-provider ] ||
    npm ci --prefix tests/e2e/oidc-provider --no-audit --no-fund --loglevel=error
# the SCIM server the connector tests run (npm scimmy + scimmy-routers, pinned likewise)
[ -d tests/e2e/scim-server/node_modules/scimmy-routers ] ||
    npm ci --prefix tests/e2e/scim-server --no-audit --no-fund --loglevel=error
cargo test --workspace

step "symbol baseline: the modules must load on glibc 2.34+ (Ubuntu 22.04 and later)"
for module in libnss_zt.so libpam_zt.so; do
    newest=$(objdump -T "target/debug/$module" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k2,2n -u | tail -1)
    echo "$module: newest glibc symbol: $newest"
    case $newest in GLIBC_2.[0-9] | GLIBC_2.[12][0-9] | GLIBC_2.3[0-4]) ;; *) echo "$module needs $newest: too new" >&2; exit 1 ;; esac
done
soname=$(objdump -p target/debug/libnss_zt.so | awk '/SONAME/ {print $2}')
[ "$soname" = libnss_zt.so.2 ] || { echo "SONAME is $soname, not libnss_zt.so.2" >&2; exit 1; }

step "the panic guard catches a panic in the package's build (zig's unwinder, glibc 2.27)"
# scripts/package.sh links with zig, which brings its own unwinder instead of
# libgcc_s: the NSS module's catch_unwind must still work there.
cargo-zigbuild test --profile deb --locked --target x86_64-unknown-linux-gnu.2.27 -p nss_zt --lib -- panic

if [ "$FUZZ_SECONDS" != 0 ]; then
    fuzz_all
fi
step "all tests passed"
