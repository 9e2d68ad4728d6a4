#!/bin/bash
# `sudo -n true` for a directory user whose right comes from a zt group
# (`%zt-login`, membership through libnss_zt, account stage through pam_zt)
# beside a local user whose right comes from a local group (/etc/group,
# pam_unix), in one run:
#
#   bash bench/sudo/run.sh            # N=200 of each, interleaved
#   N=50 bash bench/sudo/run.sh
#
# Each run is one `setpriv ... sudo -n true` process, timed with bash's
# $EPOCHREALTIME; the two kinds alternate so drift hits both alike. Reports the
# median and 90th percentile of each and the ratio of the medians. Both use the
# same sudo PAM stack (pam_zt then pam_unix in account; no authentication:
# the rules are NOPASSWD), so the difference is what zt adds to a sudo call:
# loading libnss_zt, resolving the user and its groups, and pam_zt's account
# check (snapshot, private file, max_offline).
#
# Root only. Everything happens in a private mount namespace: /etc/passwd,
# /etc/group, /etc/shadow, /etc/nsswitch.conf, /etc/pam.d, /etc/sudoers.d and /var/lib/zt
# are copies bind-mounted over the real ones, and the release modules are
# overlaid on /usr/lib/x86_64-linux-gnu; the machine's own files are never
# changed. Needs sudo, python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WS=$(cd "$HERE/../.." && pwd)
N=${N:-200}
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (private mount namespace)" >&2; exit 1; }
command -v visudo >/dev/null || { echo "run.sh: needs sudo" >&2; exit 1; }

echo "== building libnss_zt, pam_zt (release) and pam-fixture"
(cd "$WS" && cargo build -q --release -p nss_zt -p pam_zt --lib && cargo build -q --release -p zt-bench --bin pam-fixture)
TARGET_DIR=$(cd "$WS" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

T=$(mktemp -d /tmp/zt-sudo-bench.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
chmod 0755 "$T"
mkdir -m 0755 "$T/state" "$T/log" "$T/sudoers.d" "$T/ovl" "$T/ovl/upper" "$T/ovl/upper/security" "$T/ovl/work" "$T/run"
# zbench (uid 1500001) in the zt login group "zt-login"
"$TARGET_DIR/release/pam-fixture" "$T/state" > /dev/null
cp "$TARGET_DIR/release/libnss_zt.so" "$T/ovl/upper/libnss_zt.so.2"
cp "$TARGET_DIR/release/libpam_zt.so" "$T/ovl/upper/security/pam_zt.so"
cp -a /etc/pam.d "$T/pam.d"
cp -a /etc/passwd "$T/passwd"
cp -a /etc/group "$T/group"
cp -a /etc/shadow "$T/shadow"
echo "zbunix:x:1999:1999:bench:/nonexistent:/bin/sh" >> "$T/passwd"
echo "zbunix:x:1999:" >> "$T/group"
echo "zbunix:*:19000:0:99999:7:::" >> "$T/shadow"   # pam_unix account wants a shadow entry
echo "zbadmins:x:1998:zbunix" >> "$T/group"
sed -E 's/^(passwd|group):.*/\1: files zt/' /etc/nsswitch.conf > "$T/nsswitch.conf"
grep -q '^passwd:' "$T/nsswitch.conf" || printf 'passwd: files zt\ngroup: files zt\n' >> "$T/nsswitch.conf"
printf '%%zt-login ALL=(ALL) NOPASSWD: ALL\n%%zbadmins ALL=(ALL) NOPASSWD: ALL\n' > "$T/sudoers.d/zt-bench"
chmod 0440 "$T/sudoers.d/zt-bench"
visudo -cf "$T/sudoers.d/zt-bench" >/dev/null
cat > "$T/pam.d/sudo" <<PAM
auth     required   pam_unix.so
account  required   pam_zt.so audit_log=$T/log/auth.jsonl run_dir=$T/run
account  required   pam_unix.so
session  required   pam_unix.so
PAM

echo "== $N runs of each kind, interleaved"
unshare -m --propagation private bash -c '
set -euo pipefail
T=$1; N=$2
mount --bind "$T/passwd" /etc/passwd
mount --bind "$T/group" /etc/group
mount --bind "$T/shadow" /etc/shadow
mount --bind "$T/nsswitch.conf" /etc/nsswitch.conf
mount --bind "$T/pam.d" /etc/pam.d
mount --bind "$T/sudoers.d" /etc/sudoers.d
mkdir -p /var/lib/zt 2>/dev/null || true
mount --bind "$T/state" /var/lib/zt
mount -t tmpfs tmpfs /run/sudo 2>/dev/null || true
mount -t overlay overlay -o lowerdir=/usr/lib/x86_64-linux-gnu,upperdir=$T/ovl/upper,workdir=$T/ovl/work /usr/lib/x86_64-linux-gnu
cd /
zt() { setpriv --reuid=1500001 --regid=1500001 --init-groups sudo -n true; }
local_() { setpriv --reuid=1999 --regid=1999 --init-groups sudo -n true; }
# one of each first: a refusal here would make the numbers meaningless
zt || { echo "sudo refused the zt user" >&2; exit 1; }
local_ || { echo "sudo refused the local user" >&2; exit 1; }
for ((i = 0; i < N; i++)); do
    t0=$EPOCHREALTIME; zt; t1=$EPOCHREALTIME; local_; t2=$EPOCHREALTIME
    echo "$t0 $t1" >> "$T/zt.times"
    echo "$t1 $t2" >> "$T/local.times"
done
' bash "$T" "$N"

python3 - "$T" <<'PY'
import sys
t = sys.argv[1]
def load(name):
    xs = sorted((float(b) - float(a)) * 1000 for a, b in
                (l.split() for l in open(f"{t}/{name}.times")))
    return xs[len(xs) // 2], xs[int(len(xs) * 0.9)], len(xs)
zt, local = load("zt"), load("local")
print("| sudo -n true (NOPASSWD rule, %group) | runs | median (ms) | p90 (ms) |")
print("| --- | ---: | ---: | ---: |")
print(f"| directory user, zt group (libnss_zt, pam_zt account) | {zt[2]} | {zt[0]:.2f} | {zt[1]:.2f} |")
print(f"| local user, local group (files, pam_unix) | {local[2]} | {local[0]:.2f} | {local[1]:.2f} |")
print(f"\nzt / local median: {zt[0] / local[0]:.2f}")
PY
