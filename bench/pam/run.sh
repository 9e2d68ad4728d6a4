#!/bin/bash
# A whole token login (pam_zt) beside a local password login (pam_unix,
# yescrypt), both through pamtester and the real Linux-PAM, in one run:
#
#   bash bench/pam/run.sh            # N=200 logins of each, interleaved
#   N=50 bash bench/pam/run.sh
#
# Each login is one `pamtester SERVICE USER authenticate acct_mgmt` process
# (exec, libpam, the stack's modules, the answer on stdin), timed with bash's
# $EPOCHREALTIME (no fork around the measurement). The two kinds alternate so
# that drift (CPU frequency, other load) hits both alike. Reports the median
# and the 90th percentile of each and the ratio of the medians.
#
# - token: `auth [success=done ignore=ignore default=die] pam_zt.so` then
#   `account required pam_zt.so`, against a snapshot and the TEST-ONLY RS256
#   issuer key published into a temporary state directory with the agent's
#   own publish protocol (bench/src/bin/pam-fixture.rs), for directory user
#   `zbench` (in a login group), with a fresh Cloudflare Access token.
# - password: `auth required pam_unix.so` and `account required pam_unix.so`
#   for local user `zbunix` with a yescrypt password ($y$j9T$, Debian's
#   default cost).
#
# Root only. Everything happens in a private mount namespace: /etc/pam.d,
# /etc/passwd and /etc/shadow are copies bind-mounted over the real ones, so
# the machine's own files are never changed. Needs pamtester, python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WS=$(cd "$HERE/../.." && pwd)
N=${N:-200}
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (private mount namespace)" >&2; exit 1; }
command -v pamtester >/dev/null || { echo "run.sh: needs pamtester" >&2; exit 1; }

echo "== building pam_zt (release, on its own: no test-only features) and pam-fixture"
(cd "$WS" && cargo build -q --release -p pam_zt --lib && cargo build -q --release -p zt-bench --bin pam-fixture)
TARGET_DIR=$(cd "$WS" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
SO=$TARGET_DIR/release/libpam_zt.so

T=$(mktemp -d /tmp/zt-pam-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 0755 "$T"
mkdir -m 0755 "$T/state" "$T/run" "$T/log"
"$TARGET_DIR/release/pam-fixture" "$T/state" > "$T/token"
cp -a /etc/pam.d "$T/pam.d"
cp -a /etc/passwd "$T/passwd"
cp -a /etc/shadow "$T/shadow"
HASH=$(python3 -W ignore -c 'import crypt; print(crypt.crypt("benchpass", "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$"))')
case $HASH in '$y$'*) ;; *) echo "run.sh: this libcrypt cannot make yescrypt hashes" >&2; exit 1;; esac
echo "zbunix:x:1999:1999:bench:/nonexistent:/bin/sh" >> "$T/passwd"
echo "zbunix:$HASH:19000:0:99999:7:::" >> "$T/shadow"
A="state_dir=$T/state run_dir=$T/run audit_log=$T/log/auth.jsonl"
cat > "$T/pam.d/zt-bench-token" <<PAM
auth     [success=done ignore=ignore default=die]  $SO $A
auth     requisite  pam_deny.so
account  required   $SO $A
PAM
cat > "$T/pam.d/zt-bench-unix" <<PAM
auth     required   pam_unix.so
account  required   pam_unix.so
PAM

echo "== $N logins of each kind, interleaved ($(tr -d '\n' < "$T/token" | wc -c)-byte token)"
unshare -m --propagation private bash -c '
set -euo pipefail
T=$1; N=$2
mount --bind "$T/pam.d" /etc/pam.d
mount --bind "$T/passwd" /etc/passwd
mount --bind "$T/shadow" /etc/shadow
tok=$(cat "$T/token")
# one of each first: a failure here means the numbers would be meaningless
pamtester zt-bench-token zbench authenticate acct_mgmt <<<"$tok" >/dev/null 2>&1
pamtester zt-bench-unix zbunix authenticate acct_mgmt <<<"benchpass" >/dev/null 2>&1
for ((i = 0; i < N; i++)); do
    t0=$EPOCHREALTIME
    pamtester zt-bench-token zbench authenticate acct_mgmt <<<"$tok" >/dev/null 2>&1
    t1=$EPOCHREALTIME
    pamtester zt-bench-unix zbunix authenticate acct_mgmt <<<"benchpass" >/dev/null 2>&1
    t2=$EPOCHREALTIME
    echo "$t0 $t1" >> "$T/token.times"
    echo "$t1 $t2" >> "$T/unix.times"
done
' bash "$T" "$N"

python3 - "$T" <<'PY'
import sys
t = sys.argv[1]
def load(name):
    xs = sorted((float(b) - float(a)) * 1000 for a, b in
                (l.split() for l in open(f"{t}/{name}.times")))
    return xs[len(xs) // 2], xs[int(len(xs) * 0.9)], len(xs)
tok, unix = load("token"), load("unix")
print("| login (pamtester authenticate acct_mgmt) | runs | median (ms) | p90 (ms) |")
print("| --- | ---: | ---: | ---: |")
print(f"| token, pam_zt (RS256) | {tok[2]} | {tok[0]:.2f} | {tok[1]:.2f} |")
print(f"| password, pam_unix (yescrypt) | {unix[2]} | {unix[0]:.2f} | {unix[1]:.2f} |")
print(f"\ntoken / password median: {tok[0] / unix[0]:.2f}")
PY
grep -c '"result":"success"' "$T/log/auth.jsonl" | sed 's/^/audit success lines: /'
